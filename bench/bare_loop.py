"""Benchmark baseline: a bare timm training loop on medaudit's folds.

Not library code. The yardstick that ``medaudit train`` must not lose to at
any number of epochs (issue 21): for each of the run's patient-grouped folds
(the very fold assignment :func:`training.train_run` uses, same ``folds`` and
``seed``), a fresh timm model is trained on *all* the fold's training rows
(no inner split, no early stopping, no refit), with

* AdamW (weight decay 0.01, PyTorch's default), one-cycle schedule peaking at
  ``lr`` (default 2e-3; 25 % warm-up, cosine annealing, ``torch.optim.lr_scheduler.OneCycleLR``),
* bf16 autocast + channels-last on a CPU with native bf16 (else fp32),
* no augmentation, no class weighting, no weight averaging,
* inputs scaled to ``[0, 1]`` and standardised with the mean / std of the
  fold's training rows,

and the fold's out-of-fold rows are scored with the last weights. Holdout-split
rows (fold ``-1``) get the mean of the fold models' probabilities.

Usage (as a library from the other benchmarks)::

    from bench.bare_loop import bare_loop
    result = bare_loop(run, folds=5, epochs=10, seed=0)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audit.rundir import RunDir
from training.config import TrainConfig
from training.device import cpu_has_native_bf16
from training.reproducibility import fold_seed, seed_everything
from training.run_context import load_context
from training.splits import HOLDOUT_FOLD, fold_split

__all__ = ["BareResult", "bare_loop"]


@dataclass
class BareResult:
    """OOF (and holdout) probabilities of the bare loop and its wall time.

    Attributes
    ----------
    probs : numpy.ndarray
        ``(N, K)`` float32; out-of-fold for CV rows, fold-ensemble mean for holdout rows.
    folds : numpy.ndarray
        ``(N,)`` fold of each row (``-1`` = holdout), the same as ``train_run``'s.
    labels : numpy.ndarray
        ``(N,)`` recorded labels.
    seconds : float
        Wall time of the whole loop (all folds, training and scoring).
    precision : str
        ``bf16`` or ``fp32``.
    """

    probs: np.ndarray
    folds: np.ndarray
    labels: np.ndarray
    seconds: float
    precision: str


def bare_loop(
    run: RunDir,
    *,
    folds: int = 5,
    epochs: int = 10,
    seed: int = 0,
    model: str = "resnet10t",
    batch_size: int = 32,
    lr: float = 2e-3,
    holdout_split: str | None = None,
    bf16: bool | None = None,
) -> BareResult:
    """Train and score the bare loop on every fold of ``run`` (see the module docstring).

    Parameters
    ----------
    run : RunDir
        An ingested run directory.
    folds, epochs, seed, model, batch_size, holdout_split
        As in :class:`training.TrainConfig` (the fold assignment depends on
        ``folds``, ``seed`` and ``holdout_split`` only).
    lr : float
        Peak learning rate of the one-cycle schedule.
    bf16 : bool, optional
        bf16 autocast + channels-last; default: when the CPU has native bf16.

    Returns
    -------
    BareResult
    """
    import timm

    t0 = time.perf_counter()
    config = TrainConfig(folds=folds, seed=seed, model=model, holdout_split=holdout_split)
    ctx = load_context(run, config)
    raw = torch.from_numpy(np.asarray(run.read_array("images")))
    images = raw.float().div_(255) if raw.dtype == torch.uint8 else raw.float()
    n, c = images.shape[0], images.shape[1]
    k = len(ctx.classes)
    labels = torch.from_numpy(ctx.labels.copy())
    use_bf16 = cpu_has_native_bf16() if bf16 is None else bf16
    fmt = torch.channels_last if use_bf16 else torch.contiguous_format
    probs = np.zeros((n, k), np.float32)
    hold = np.flatnonzero(ctx.folds == HOLDOUT_FOLD)
    hold_sum = np.zeros((hold.size, k), np.float64)
    for f in range(folds):
        split = fold_split(ctx.folds, f, ctx.labels, ctx.groups, inner_val_fraction=0.25, seed=seed)
        train_rows = np.sort(np.concatenate([split.train, split.inner_val]))
        mean = images[train_rows].mean(dim=(0, 2, 3), keepdim=True)
        std = images[train_rows].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        seed_everything(fold_seed(seed, f))
        gen = torch.Generator().manual_seed(fold_seed(seed, f))
        net = timm.create_model(model, pretrained=False, num_classes=k, in_chans=c)
        net = net.to(memory_format=fmt)
        opt = torch.optim.AdamW(net.parameters(), lr=lr)
        steps_per_epoch = max(1, len(train_rows) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=steps_per_epoch * epochs
        )
        rows = torch.from_numpy(train_rows)
        for _ in range(epochs):
            net.train()
            order = rows[torch.randperm(len(rows), generator=gen)]
            for i in range(steps_per_epoch):
                idx = order[i * batch_size : (i + 1) * batch_size]
                x = ((images[idx] - mean) / std).contiguous(memory_format=fmt)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                    out = net(x)
                loss = F.cross_entropy(out.float(), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        net.eval()

        def score(r: np.ndarray, net=net, mean=mean, std=std) -> np.ndarray:
            out = []
            with torch.no_grad():
                for i in range(0, len(r), 256):
                    x = ((images[r[i : i + 256]] - mean) / std).contiguous(memory_format=fmt)
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                        out.append(torch.softmax(net(x).float(), 1).numpy())
            return np.concatenate(out) if out else np.zeros((0, k), np.float32)

        probs[split.oof] = score(split.oof)
        if hold.size:
            hold_sum += score(hold)
    if hold.size:
        probs[hold] = (hold_sum / folds).astype(np.float32)
    return BareResult(
        probs,
        ctx.folds.copy(),
        ctx.labels.copy(),
        time.perf_counter() - t0,
        "bf16" if use_bf16 else "fp32",
    )
