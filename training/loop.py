"""The training loop: one seeded pass of fitting a model on a set of rows.

:func:`fit_model` trains a fresh model with AdamW (timm's
``create_optimizer_v2``), a linear warm-up + cosine learning-rate schedule
stepped per optimizer step (timm's ``CosineLRScheduler``), augmentation and
mixup, class weighting, and an exponential moving average of the weights
(timm's ``ModelEmaV3``) that is what gets evaluated, early-stopped and kept.
With an inner validation split it records the inner-validation metrics every
epoch, restores the best epoch and stops early; without one (a refit) it runs
a fixed number of epochs of the same schedule.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audit.metrics import auc_score
from training.augment import BatchAugmenter, mixup
from training.config import TrainConfig
from training.dataset import ImageCache, Normalization, iterate_batches, prepare_batch
from training.deadline import Deadline
from training.device import DeviceSetup
from training.models import build_model
from training.predict import predict_rows, softmax
from training.reproducibility import seed_everything

if TYPE_CHECKING:  # pragma: no cover
    from timm.scheduler import CosineLRScheduler
    from timm.utils import ModelEmaV3

__all__ = ["FitContext", "FitResult", "class_prior", "fit_model", "warmup_cosine_schedule",
           "weight_ema"]

_log = logging.getLogger(__name__)

#: ``ModelEmaV3``'s warm-up decay after ``step`` updates is
#: ``1 - (1 + s / warmup_gamma) ** -warmup_power`` with ``s = step - update_after_step - 1``;
#: these settings make it ``(1 + t) / (10 + t)`` after ``t`` updates, so the average
#: follows the live weights closely at first and lengthens its memory as training goes on.
_EMA_WARMUP = {"use_warmup": True, "warmup_gamma": 9.0, "warmup_power": 1.0,
               "update_after_step": -2}


@dataclass(frozen=True)
class FitContext:
    """What every training pass of one fold shares.

    Attributes
    ----------
    config : TrainConfig
        Architecture, optimisation, augmentation and early-stopping settings.
    labels : numpy.ndarray
        ``(N,)`` int64 class indices of all manifest rows.
    n_classes : int
        ``K``.
    setup : DeviceSetup
        Device, precision and memory format.
    cache : ImageCache
        Images of the run.
    norm : Normalization
        Input normalisation (statistics of the fold's training rows).
    position : int
        Line of the progress bar (parallel folds).
    deadline : Deadline, optional
        When training passes must stop (``--time-budget``); checked after
        every optimizer step.
    """

    config: TrainConfig
    labels: np.ndarray
    n_classes: int
    setup: DeviceSetup
    cache: ImageCache
    norm: Normalization
    position: int = 0
    deadline: Deadline | None = None


@dataclass
class FitResult:
    """What one pass of :func:`fit_model` returns (the kept weights are in ``net``).

    Attributes
    ----------
    net : torch.nn.Module
        The kept network: the weight average (or the raw model without one) at
        the best inner-validation epoch, or after the last epoch of a refit.
    history : list of dict
        One record per epoch run (``train_loss``, ``lr``, timings and, with an
        inner split, ``inner_val_loss`` / ``inner_val_auc`` / ``inner_val_acc``).
    best_epoch : int
        1-based epoch whose weights were kept.
    train_seconds : float
        Time spent in training epochs.
    train_images : int
        Training images processed.
    deadline_hit : bool
        Training stopped at ``FitContext.deadline`` before the end of its last
        epoch; the epoch cut short is the last record of ``history`` (marked
        ``stopped_by_deadline``, evaluated like the others).
    """

    net: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    train_seconds: float
    train_images: int
    deadline_hit: bool = False

    @property
    def best_record(self) -> dict[str, Any]:
        """The history record of the kept (best) epoch."""
        return self.history[self.best_epoch - 1]


def class_prior(labels: np.ndarray, k: int) -> np.ndarray:
    """Class frequencies of ``labels`` (each class counted at least once).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(M,)`` class indices in ``[0, k)``.
    k : int
        Number of classes.

    Returns
    -------
    numpy.ndarray
        ``(k,)`` float64 counts over ``len(labels)``; a class absent from
        ``labels`` counts once, so every entry is positive.
    """
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return np.maximum(counts, 1.0) / max(counts.sum(), 1.0)


def weight_ema(model: nn.Module, *, horizon_steps: float) -> ModelEmaV3:
    """An exponential moving average of ``model``'s weights (Polyak averaging).

    The average is evaluated instead of the raw weights: on small medical
    datasets it smooths the noisy inner-validation curve that early stopping
    reads, and usually generalises better (Izmailov et al., UAI 2018 discuss
    weight averaging). timm's ``ModelEmaV3`` with its decay warm-up set to
    ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so early steps are
    not dominated by the random initialisation; parameters are averaged,
    buffers (BatchNorm statistics) copied from the live model. Call
    ``update(model, step=t)`` after optimizer step ``t`` (1-based).

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained.
    horizon_steps : float
        Averaging horizon in optimizer steps; ``decay = 1 - 1 / (1 + horizon)``.

    Returns
    -------
    timm.utils.ModelEmaV3
        Its ``module`` holds the averaged weights (no gradients, eval mode).
    """
    from timm.utils import ModelEmaV3

    decay = 1.0 - 1.0 / (1.0 + max(horizon_steps, 0.0))
    ema = ModelEmaV3(model, decay=decay, exclude_buffers=True, **_EMA_WARMUP)
    ema.module.requires_grad_(False)
    return ema


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int
) -> CosineLRScheduler:
    """A linear warm-up, then a cosine decay to zero, stepped per optimizer step.

    timm's ``CosineLRScheduler``: the learning rate rises linearly from
    ``lr / warmup_steps`` at step 0 to the optimizer's ``lr`` at step
    ``warmup_steps``, then follows ``lr * (1 + cos(pi * p)) / 2`` with ``p`` the
    fraction of the remaining ``total_steps - warmup_steps`` steps done. Call
    ``step_update(t)`` after optimizer step ``t`` (1-based).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Its param groups' ``lr`` is the peak learning rate.
    total_steps : int
        Optimizer steps of the whole schedule.
    warmup_steps : int
        Steps of the linear warm-up (0: none).

    Returns
    -------
    timm.scheduler.CosineLRScheduler
    """
    from timm.scheduler import CosineLRScheduler

    peak = float(optimizer.param_groups[0]["lr"])
    return CosineLRScheduler(
        optimizer, t_initial=max(1, total_steps - warmup_steps), lr_min=0.0,
        warmup_t=warmup_steps, warmup_lr_init=peak / warmup_steps if warmup_steps else 0.0,
        warmup_prefix=True, t_in_epochs=False,
    )


def fit_model(
    fc: FitContext,
    rows: np.ndarray,
    *,
    seed: int,
    inner_val: np.ndarray | None = None,
    stop_after: int | None = None,
    desc: str = "fit",
) -> FitResult:
    """Train one model on ``rows`` from a seeded initialisation.

    With ``inner_val`` the inner-validation loss / AUC / accuracy are recorded
    every epoch, the best epoch (lowest loss, see ``TrainConfig.patience``) is
    restored and early stopping applies. Without it (a refit) exactly
    ``stop_after`` epochs of the same ``config.epochs``-long schedule run and
    the last weights are kept: the trajectory the inner split validated,
    replayed on more rows.

    Parameters
    ----------
    fc : FitContext
        What the fold's training passes share.
    rows : numpy.ndarray
        ``(M,)`` manifest rows to fit on; their class prior sets the class
        weights and the logit adjustment of the inner-validation metrics.
    seed : int
        Seed of the initialisation, augmentation and batch order.
    inner_val : numpy.ndarray, optional
        ``(V,)`` inner-validation rows, disjoint from ``rows`` by patient.
    stop_after : int, optional
        Last epoch to run (default ``config.epochs``).
    desc : str
        Progress-bar label.

    Returns
    -------
    FitResult
    """
    from timm.optim import create_optimizer_v2
    from tqdm.auto import tqdm

    config, setup, cache, norm = fc.config, fc.setup, fc.cache, fc.norm
    k = fc.n_classes
    bs = config.batch_size
    n_fit = len(rows)
    drop_last = n_fit > bs
    steps_per_epoch = n_fit // bs if drop_last else 1
    if config.auto_fields:  # called outside train_run / train_fold: derive them here
        config = config.resolved(steps_per_epoch)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(config, k, cache, setup)
    # The fused AdamW kernel (CPU and CUDA) does one pass over the weights instead of several.
    optimizer = create_optimizer_v2(
        model, opt="adamw", lr=config.lr, weight_decay=config.weight_decay,
        fused=setup.device.type in ("cpu", "cuda"),
    )
    y_fit = fc.labels[rows]
    prior = class_prior(y_fit, k)
    log_prior = np.log(prior).astype(np.float32)
    adjust = config.class_weighting != "none"
    weight = None
    if config.class_weighting == "balanced":
        weight = torch.tensor(1.0 / (k * prior), dtype=torch.float32, device=setup.device)
    warmup_epochs = float(config.warmup_epochs or 0.0)
    sched = warmup_cosine_schedule(optimizer, total_steps=steps_per_epoch * config.epochs,
                                   warmup_steps=round(steps_per_epoch * warmup_epochs))
    scaler = torch.amp.GradScaler("cuda") if setup.needs_grad_scaler else None
    augmenter = BatchAugmenter(
        flips=config.flips, rotate_degrees=config.rotate_degrees,
        scale_range=config.scale_range, translate_fraction=config.translate_fraction,
        brightness=config.brightness, contrast=config.contrast,
        probability=float(config.augment_probability or 0.0),
    )
    sample_w = torch.tensor((1.0 / prior)[y_fit], dtype=torch.float64)
    ema = (
        weight_ema(model, horizon_steps=config.ema_epochs * steps_per_epoch)
        if config.ema_epochs else None
    )
    net = ema.module if ema is not None else model  # the weights that are evaluated and kept

    def evaluate(eval_rows: np.ndarray) -> tuple[float, float, float]:
        logits, _ = predict_rows(net, cache, eval_rows, setup=setup, norm=norm,
                                 image_size=config.image_size, batch_size=2 * bs,
                                 num_workers=config.num_workers)
        yt = torch.from_numpy(fc.labels[eval_rows])
        loss = float(F.cross_entropy(torch.from_numpy(logits), yt,
                                     weight=None if weight is None else weight.cpu()))
        probs = softmax(logits + (log_prior if adjust else 0.0))
        acc = float(np.mean(probs.argmax(1) == fc.labels[eval_rows]))
        return loss, auc_score(fc.labels[eval_rows], probs), acc

    history: list[dict[str, Any]] = []
    best_loss, best_epoch, best_state = math.inf, 0, None
    # Early epochs at a high learning rate are noisy on small inner splits: never stop
    # before half of the cosine schedule has run.
    min_epochs = max(math.ceil(warmup_epochs) + config.patience, math.ceil(config.epochs / 2))
    # Weights from the first quarter of the schedule are never kept: they are under-trained,
    # and on a small, hard inner split their near-uniform predictions can have a lower log
    # loss than a better but more confident model.
    min_keep = min(max(1, math.ceil(config.epochs / 4)), config.epochs)
    last = min(stop_after or config.epochs, config.epochs)
    train_seconds, train_images, steps = 0.0, 0, 0
    deadline_hit = False
    bar = tqdm(range(1, last + 1), desc=desc, unit="epoch", disable=config.quiet,
               position=fc.position, leave=True, dynamic_ncols=True)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        if config.class_weighting == "sampler":
            order = torch.multinomial(sample_w, n_fit, replacement=True, generator=gen).numpy()
        else:
            order = torch.randperm(n_fit, generator=gen).numpy()
        epoch_rows = rows[order]
        if drop_last:
            epoch_rows = epoch_rows[: steps_per_epoch * bs]
        total, count = 0.0, 0
        for batch_rows, raw in iterate_batches(cache, epoch_rows, bs, num_workers=config.num_workers):
            x = prepare_batch(raw, setup=setup, norm=norm, image_size=config.image_size,
                              is_uint8=cache.is_uint8, augmenter=augmenter, generator=gen)
            y = torch.from_numpy(fc.labels[batch_rows]).to(setup.device)
            if config.mixup:
                x, partner, lam = mixup(x, config.mixup, generator=gen)
            with setup.autocast():
                out = model(x)
            loss = F.cross_entropy(out.float(), y, weight=weight)
            if config.mixup:
                loss = lam * loss + (1.0 - lam) * F.cross_entropy(out.float(), y[partner], weight=weight)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            steps += 1
            sched.step_update(num_updates=steps)
            if ema is not None:
                ema.update(model, step=steps)
            total += float(loss.detach()) * len(batch_rows)
            count += len(batch_rows)
            if fc.deadline is not None and fc.deadline.expired():
                deadline_hit = epoch < last or count < len(epoch_rows)
                break
        t_train = time.perf_counter() - t0
        train_seconds += t_train
        train_images += count
        rec: dict[str, Any] = {"epoch": epoch, "train_loss": total / max(count, 1)}
        if inner_val is not None:
            val_loss, val_auc, val_acc = evaluate(inner_val)
            rec.update(inner_val_loss=val_loss, inner_val_auc=val_auc, inner_val_acc=val_acc)
            if epoch >= min_keep and val_loss < best_loss - 1e-6:
                best_loss, best_epoch = val_loss, epoch
                best_state = copy.deepcopy(net.state_dict())
            bar.set_postfix(loss=f"{rec['train_loss']:.3f}", val_loss=f"{val_loss:.3f}",
                            val_auc=f"{val_auc:.3f}")
        else:
            bar.set_postfix(loss=f"{rec['train_loss']:.3f}")
        rec.update(lr=float(optimizer.param_groups[0]["lr"]), train_seconds=t_train,
                   seconds=time.perf_counter() - t0)
        if deadline_hit:
            rec["stopped_by_deadline"] = True  # this epoch was cut short
        history.append(rec)
        if deadline_hit:
            _log.info("%s: time budget reached during epoch %d; training stops", desc, epoch)
            break
        if (inner_val is not None and config.patience and epoch >= min_epochs
                and epoch - best_epoch >= config.patience):
            _log.info("%s: early stop at epoch %d (best inner-val loss at epoch %d)",
                      desc, epoch, best_epoch)
            break
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    return FitResult(net, history, best_epoch or len(history), train_seconds, train_images,
                     deadline_hit)
