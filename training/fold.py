"""One cross-validation fold as an independent, resumable unit of work.

:func:`train_fold` is a function of the run directory, the fold index and the
config only. It recomputes the (deterministic) fold assignment, trains on the
fold's training rows with early stopping on an inner validation split, refits
the model on all training rows for the chosen number of epochs
(``TrainConfig.refit``), scores the fold's held-out rows (and the holdout-split
rows) on the original and the masked images, and writes only its own outputs.
With ``TrainConfig.models_per_fold`` > 1 it does this for each model (own seed),
with ``TrainConfig.keep_selected`` it also keeps each selected model next to its
refit, and it writes the mean of the kept models' probabilities::

    train/fold_<k>.pt                 state dict of the kept model (keys prefixed
                                      ``model<i>.`` when several models are kept)
    train/fold_<k>/rows.npy           (M,) held-out row indices (manifest order)
    train/fold_<k>/probs.npy          (M, K) float32
    train/fold_<k>/logits.npy         (M, K) float32
    train/fold_<k>/embeddings.npy     (M, D) float32
    train/fold_<k>/masked_<v>.npy     (M, K) float32 per masked variant
    train/fold_<k>/holdout_*.npy      the same for the holdout-split rows
    train/fold_<k>/history.json       learning curves and fold metrics
    train/fold_<k>/done               JSON marker written last

Every file is written atomically and ``done`` last, so a fold either has all
its outputs or is retrained. A finished fold is reused only when the marker's
config hash and data fingerprint match the current ones.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from audit.metrics import auc_score
from audit.rundir import RunDir, atomic_write
from audit.stats import finite_or_none
from training.augment import BatchAugmenter, mixup
from training.config import TrainConfig
from training.dataset import ImageCache, Normalization, iterate_batches, prepare_batch
from training.device import DeviceSetup, resolve_device_setup
from training.folds import FoldSplit, assign_folds, fold_split
from training.models import create_model, embed_and_logits, join_model_states
from training.small_conv import place_model

__all__ = [
    "FoldOutputs",
    "FoldResult",
    "WeightEma",
    "build_model",
    "checkpoint_path",
    "data_fingerprint",
    "deterministic",
    "fold_dir",
    "fold_is_done",
    "fold_seed",
    "load_context",
    "load_fold_outputs",
    "load_fold_result",
    "member_seed",
    "predict_rows",
    "seed_everything",
    "torch_threads",
    "train_fold",
    "write_fold_outputs",
]

_log = logging.getLogger(__name__)

DONE = "done"


# ---------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class FoldResult:
    """Summary of one finished fold (arrays stay on disk: :func:`load_fold_outputs`).

    Attributes
    ----------
    fold : int
        Fold index.
    auc : float
        Out-of-fold AUC of this fold's held-out rows (macro OvR for K > 2).
    in_sample_auc : float
        AUC of the fold's prediction (every kept model) on the rows the kept
        model was fitted on (with ``keep_selected``, the selected model saw
        only the training part of them, not the inner split).
    inner_val_auc : float
        Inner-validation AUC at the restored (best) epoch.
    best_epoch : int
        1-based epoch whose weights were kept.
    epochs_run : int
        Epochs trained before stopping.
    n_train, n_inner_val, n_heldout, n_holdout : int
        Rows the kept model was fitted on (training rows, plus the inner split
        after a refit), inner-validation, held-out and holdout-split rows.
    seconds : float
        Wall time of the fold (of the original run when reused).
    train_seconds : float
        Time spent in training epochs only.
    train_images : int
        Training images processed (epochs x rows per epoch).
    setup : dict
        Device / precision actually used.
    reused : bool
        True when the outputs of a previous run were reused (resume).
    refit : bool
        True when the kept model was refitted on all training rows of the fold
        for ``best_epoch`` epochs after the inner split chose that count.
    models : int
        Models in the fold's ensemble, the ones in ``train/fold_<k>.pt``
        (``models_per_fold``, twice that with ``keep_selected`` and a refit);
        the epoch fields describe the first one.
    """

    fold: int
    auc: float
    in_sample_auc: float
    inner_val_auc: float
    best_epoch: int
    epochs_run: int
    n_train: int
    n_inner_val: int
    n_heldout: int
    n_holdout: int
    seconds: float
    train_seconds: float
    train_images: int
    setup: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    refit: bool = False
    models: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as ``None``)."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        return out


@dataclass(frozen=True)
class FoldOutputs:
    """Arrays written by one fold (rows are manifest row indices).

    Attributes
    ----------
    rows : numpy.ndarray
        ``(M,)`` int64 held-out rows.
    probs, logits : numpy.ndarray
        ``(M, K)`` float32.
    embeddings : numpy.ndarray
        ``(M, D)`` float32.
    masked : dict of str to numpy.ndarray
        ``(M, K)`` float32 probabilities per masked variant.
    holdout_rows : numpy.ndarray
        ``(H,)`` int64 rows of the holdout split (may be empty).
    holdout_probs, holdout_logits, holdout_embeddings : numpy.ndarray
        ``(H, K)``, ``(H, K)``, ``(H, D)`` float32.
    holdout_masked : dict of str to numpy.ndarray
        ``(H, K)`` per variant.
    """

    rows: np.ndarray
    probs: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray
    masked: dict[str, np.ndarray]
    holdout_rows: np.ndarray
    holdout_probs: np.ndarray
    holdout_logits: np.ndarray
    holdout_embeddings: np.ndarray
    holdout_masked: dict[str, np.ndarray]


# ---------------------------------------------------------------------------
# paths, markers, fingerprints


def fold_dir(run: RunDir, fold: int) -> Path:
    """``train/fold_<k>/`` of the run directory."""
    return run.path / "train" / f"fold_{fold}"


def checkpoint_path(run: RunDir, fold: int) -> Path:
    """``train/fold_<k>.pt`` of the run directory."""
    return run.path / "train" / f"fold_{fold}.pt"


def fold_seed(seed: int, fold: int) -> int:
    """The seed of fold ``fold`` derived from the run seed (a 31-bit int)."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0] & 0x7FFFFFFF)


def data_fingerprint(run: RunDir, manifest: pd.DataFrame | None = None) -> str:
    """A cheap fingerprint of the training data of a run directory.

    Hashes the manifest columns that define the task (``sample_id``, ``label``,
    ``patient_key``, ``split``), the class names, the image cache's shape and
    dtype and up to 64 evenly spaced cached images.

    Returns
    -------
    str
        16 hex digits.
    """
    if manifest is None:
        manifest = run.read_manifest()
    h = hashlib.sha256()
    cols = [c for c in ("sample_id", "label", "patient_key", "split") if c in manifest.columns]
    h.update(pd.util.hash_pandas_object(manifest[cols], index=False).to_numpy().tobytes())
    h.update(json.dumps(run.read_run_json().get("classes")).encode())
    images = run.read_array("images", mmap=True)
    h.update(str((images.shape, images.dtype.str)).encode())
    for i in np.unique(np.linspace(0, len(images) - 1, num=min(64, len(images))).astype(int)):
        h.update(np.ascontiguousarray(images[i]).tobytes())
    return h.hexdigest()[:16]


def _marker(config: TrainConfig, fingerprint: str) -> dict[str, str]:
    return {"config_hash": config.config_hash(), "data_fingerprint": fingerprint}


def fold_is_done(run: RunDir, fold: int, config: TrainConfig, fingerprint: str) -> bool:
    """Whether fold ``fold`` finished under the same config and data.

    Parameters
    ----------
    run : RunDir
    fold : int
    config : TrainConfig
    fingerprint : str
        From :func:`data_fingerprint`.

    Returns
    -------
    bool
    """
    p = fold_dir(run, fold) / DONE
    if not p.is_file():
        return False
    try:
        marker = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    want = _marker(config, fingerprint)
    return all(marker.get(k) == v for k, v in want.items())


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)

    atomic_write(path, write)


def write_fold_outputs(
    run: RunDir,
    fold: int,
    outputs: FoldOutputs,
    *,
    history: dict[str, Any],
    result: FoldResult,
    marker: dict[str, str],
) -> None:
    """Write a fold's arrays and history atomically, then the ``done`` marker.

    Parameters
    ----------
    run : RunDir
    fold : int
    outputs : FoldOutputs
    history : dict
        Learning curves (JSON-ready).
    result : FoldResult
        Fold summary, stored in the marker.
    marker : dict
        Config hash and data fingerprint.
    """
    d = fold_dir(run, fold)
    (d / DONE).unlink(missing_ok=True)
    _save_npy(d / "rows.npy", outputs.rows.astype(np.int64))
    _save_npy(d / "probs.npy", outputs.probs.astype(np.float32))
    _save_npy(d / "logits.npy", outputs.logits.astype(np.float32))
    _save_npy(d / "embeddings.npy", outputs.embeddings.astype(np.float32))
    for name, arr in outputs.masked.items():
        _save_npy(d / f"masked_{name}.npy", arr.astype(np.float32))
    _save_npy(d / "holdout_rows.npy", outputs.holdout_rows.astype(np.int64))
    _save_npy(d / "holdout_probs.npy", outputs.holdout_probs.astype(np.float32))
    _save_npy(d / "holdout_logits.npy", outputs.holdout_logits.astype(np.float32))
    _save_npy(d / "holdout_embeddings.npy", outputs.holdout_embeddings.astype(np.float32))
    for name, arr in outputs.holdout_masked.items():
        _save_npy(d / f"holdout_masked_{name}.npy", arr.astype(np.float32))
    rel = d.relative_to(run.path).as_posix()
    run.write_json(f"{rel}/history.json", history)
    run.write_json(f"{rel}/{DONE}", {**marker, "result": result.to_dict()})


def load_fold_outputs(run: RunDir, fold: int, variants: tuple[str, ...]) -> FoldOutputs:
    """Read the arrays a finished fold wrote (see the module docstring).

    Raises
    ------
    FileNotFoundError
        When the fold has not finished.
    """
    d = fold_dir(run, fold)
    if not (d / DONE).is_file():
        raise FileNotFoundError(f"fold {fold} of {run.path} has not finished (no {d / DONE})")

    def ld(name: str) -> np.ndarray:
        return np.load(d / f"{name}.npy", allow_pickle=False)

    return FoldOutputs(
        rows=ld("rows"),
        probs=ld("probs"),
        logits=ld("logits"),
        embeddings=ld("embeddings"),
        masked={v: ld(f"masked_{v}") for v in variants},
        holdout_rows=ld("holdout_rows"),
        holdout_probs=ld("holdout_probs"),
        holdout_logits=ld("holdout_logits"),
        holdout_embeddings=ld("holdout_embeddings"),
        holdout_masked={v: ld(f"holdout_masked_{v}") for v in variants},
    )


def load_fold_result(run: RunDir, fold: int) -> tuple[FoldResult, dict[str, Any]]:
    """The :class:`FoldResult` (marked ``reused``) and history of a finished fold."""
    d = fold_dir(run, fold)
    marker = json.loads((d / DONE).read_text(encoding="utf-8"))
    res = {k: (float("nan") if v is None else v) for k, v in marker["result"].items()}
    res["reused"] = True
    history = json.loads((d / "history.json").read_text(encoding="utf-8"))
    return FoldResult(**res), history


# ---------------------------------------------------------------------------
# reproducibility


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds third-party code using the legacy global RNG
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(setup: DeviceSetup) -> Iterator[None]:
    """Deterministic kernels for the duration of a fold (restored afterwards).

    On a CPU ``torch.use_deterministic_algorithms(True, warn_only=True)`` is
    switched on, but not its debugging aid
    ``torch.utils.deterministic.fill_uninitialized_memory``, which writes NaN into
    every tensor made by ``torch.empty`` so that a kernel reading memory it never
    wrote shows up as NaN. The kernels used here write before they read (the
    determinism and resume tests pass, and the speed benchmark's OOF AUCs are
    bitwise unchanged), while the filling cost 15-25 ms of a ~300 ms ResNet-18
    bf16 step at batch 64 on 2 cores (5-8 %; medians of 10 and of 25 alternated
    steps in two runs). On CUDA cuDNN autotuning is switched off instead (full
    determinism there would need ``CUBLAS_WORKSPACE_CONFIG`` and slower kernels).
    """
    import torch.utils.deterministic as torch_deterministic

    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_fill = torch_deterministic.fill_uninitialized_memory
    prev_bench = torch.backends.cudnn.benchmark
    try:
        if setup.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch_deterministic.fill_uninitialized_memory = False
        else:
            torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch_deterministic.fill_uninitialized_memory = prev_fill
        torch.backends.cudnn.benchmark = prev_bench


# ---------------------------------------------------------------------------
# shared context


@dataclass(frozen=True)
class _RunContext:
    run: RunDir
    manifest: pd.DataFrame
    labels: np.ndarray
    groups: np.ndarray
    classes: list[str]
    folds: np.ndarray
    fingerprint: str


def load_context(run: RunDir, config: TrainConfig) -> _RunContext:
    """Read what every fold needs once: manifest, labels, groups, folds, fingerprint.

    Raises
    ------
    ValueError
        When labels are outside ``[0, K)`` for the K class names of ``run.json``.
    """
    manifest = run.read_manifest()
    classes = run.class_names()
    labels = manifest["label"].to_numpy(dtype=np.int64)
    k = len(classes)
    if k < 2:
        raise ValueError(f"run.json of {run.path} lists {k} class(es) {classes}; training needs >= 2")
    bad = np.flatnonzero((labels < 0) | (labels >= k))
    if bad.size:
        raise ValueError(
            f"manifest of {run.path}: label must be in [0, {k}) for classes {classes}; got "
            f"{int(labels[bad[0]])} at row {int(bad[0])} ({bad.size} row(s) in all)"
        )
    groups = manifest["patient_key"].astype(str).to_numpy()
    folds = assign_folds(
        manifest, folds=config.folds, seed=config.seed, holdout_split=config.holdout_split
    )
    return _RunContext(run, manifest, labels, groups, classes, folds, data_fingerprint(run, manifest))


# ---------------------------------------------------------------------------
# training


def _class_prior(labels: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return np.maximum(counts, 1.0) / max(counts.sum(), 1.0)


def _lr_lambda(total_steps: int, warmup_steps: int):  # type: ignore[no-untyped-def]
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


@torch.no_grad()
def predict_rows(
    model: nn.Module,
    cache: ImageCache,
    rows: np.ndarray,
    *,
    setup: DeviceSetup,
    norm: Normalization,
    image_size: int | None,
    batch_size: int,
    variant: str | None = None,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of ``rows`` (eval mode, no augmentation).

    Returns
    -------
    logits : numpy.ndarray
        ``(M, K)`` float32.
    embeddings : numpy.ndarray
        ``(M, D)`` float32.
    """
    model.eval()
    logits: list[torch.Tensor] = []
    embs: list[torch.Tensor] = []
    for _, raw in iterate_batches(cache, rows, batch_size, num_workers=num_workers):
        x = prepare_batch(raw, setup=setup, norm=norm, image_size=image_size,
                          is_uint8=cache.is_uint8, variant=variant)
        with setup.autocast():
            emb, out = embed_and_logits(model, x)
        logits.append(out.float().cpu())
        embs.append(emb.float().cpu())
    if not logits:  # no rows: one dummy image gives the output widths
        c, s = cache.channels, image_size or cache.size
        dummy = torch.zeros(1, c, s, s, device=setup.device).contiguous(memory_format=setup.memory_format)
        with setup.autocast():
            emb, out = embed_and_logits(model, dummy)
        return (np.zeros((0, out.shape[1]), np.float32), np.zeros((0, emb.shape[1]), np.float32))
    return torch.cat(logits).numpy(), torch.cat(embs).numpy()


def build_model(config: TrainConfig, n_classes: int, cache: ImageCache, setup: DeviceSetup) -> nn.Module:
    """The configured timm model for ``cache``'s images, placed on ``setup``'s device.

    Parameters
    ----------
    config : TrainConfig
        Architecture, pretrained weights, stem-pool policy and input side.
    n_classes : int
        Output width ``K``.
    cache : ImageCache
        Gives the input channels and, without ``config.image_size``, the side.
    setup : DeviceSetup
        Device, precision and memory format (see :func:`training.small_conv.place_model`).

    Returns
    -------
    torch.nn.Module
        Model taking ``(B, C, S, S)`` inputs, in training mode.
    """
    side = config.image_size or cache.size
    model = create_model(config.model, n_classes, cache.channels,
                         pretrained_weights=config.pretrained_weights,
                         stem_pool=config.stem_pool, input_side=side)
    return place_model(model, setup, (cache.channels, side, side))


class WeightEma:
    """Exponential moving average of a model's weights (Polyak averaging).

    The average is evaluated instead of the raw weights: on small medical
    datasets it smooths the noisy inner-validation curve that early stopping
    reads, and usually generalises better (Izmailov et al., UAI 2018 discuss
    weight averaging; timm's ``ModelEmaV3`` is the same idea). The decay follows
    a warm-up ``min(decay, (1 + t) / (10 + t))`` so early steps are not
    dominated by the random initialisation; buffers (BatchNorm statistics) are
    copied from the live model.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained.
    horizon_steps : float
        Averaging horizon in optimizer steps; ``decay = 1 - 1 / (1 + horizon)``.
    """

    def __init__(self, model: nn.Module, *, horizon_steps: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = 1.0 - 1.0 / (1.0 + max(horizon_steps, 0.0))
        self.steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average."""
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        ema_p = [p for p in self.module.parameters()]
        cur_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, cur_p, 1.0 - decay)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def train_fold(
    run_dir: RunDir | str | os.PathLike[str],
    fold: int,
    config: TrainConfig,
    *,
    position: int = 0,
) -> FoldResult:
    """Train, score and save one fold (an independent, resumable unit of work).

    Parameters
    ----------
    run_dir : RunDir or path
        An ingested run directory (``manifest.parquet``, ``images.npy``,
        ``run.json`` with ``classes``).
    fold : int
        Fold index in ``[0, config.folds)``.
    config : TrainConfig
        Must have ``mode='finetune'`` (linear probes are fitted by
        :func:`training.linear_probe.train_linear_probe`).
    position : int
        Line of the progress bar (parallel folds).

    Returns
    -------
    FoldResult
        Also when the fold was already done under the same config and data
        (then ``reused=True`` and nothing is retrained).

    Raises
    ------
    ValueError
        Bad fold index, mode, or data that cannot be split by patient.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    if config.mode != "finetune":
        raise ValueError(
            f"train_fold trains fine-tuned folds; config.mode is {config.mode!r}: use "
            "training.train_run, which fits linear probes for mode='linear-probe'"
        )
    if isinstance(fold, bool) or not isinstance(fold, int | np.integer) or not 0 <= fold < config.folds:
        raise ValueError(f"fold must be an int in [0, {config.folds}); got {fold!r}")
    fold = int(fold)
    ctx = load_context(run, config)
    if fold_is_done(run, fold, config, ctx.fingerprint):
        _log.info("fold %d of %s already done with the same config and data; reusing it",
                  fold, run.path)
        return load_fold_result(run, fold)[0]
    with torch_threads(config.threads):
        return _train_fold(ctx, fold, config, position=position)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op CPU threads inside the block (``None``: unchanged)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Fit:
    """What one pass of :func:`_fit` returns (the kept weights are in ``net``)."""

    net: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    train_seconds: float
    train_images: int

    @property
    def best_record(self) -> dict[str, Any]:
        """The history record of the kept (best) epoch."""
        return self.history[self.best_epoch - 1]


def _fit(
    ctx: _RunContext,
    rows: np.ndarray,
    config: TrainConfig,
    *,
    setup: DeviceSetup,
    cache: ImageCache,
    norm: Normalization,
    seed: int,
    prior: np.ndarray,
    inner_val: np.ndarray | None,
    stop_after: int | None,
    desc: str,
    position: int,
) -> _Fit:
    """Train one model on ``rows`` from a seeded initialisation.

    With ``inner_val`` the inner-validation loss / AUC / accuracy are recorded
    every epoch, the best epoch (lowest loss, see ``TrainConfig.patience``) is
    restored and early stopping applies. Without it (a refit) exactly
    ``stop_after`` epochs of the same ``config.epochs``-long schedule run and
    the last weights are kept: the trajectory the inner split validated,
    replayed on more rows.
    """
    from timm.optim import create_optimizer_v2
    from tqdm.auto import tqdm

    k = len(ctx.classes)
    bs = config.batch_size
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(config, k, cache, setup)
    # The fused AdamW kernel (CPU and CUDA) does one pass over the weights instead of
    # several: ~10 ms less per ResNet-18 step on this 2-core CPU (bench_train_speed).
    optimizer = create_optimizer_v2(
        model, opt="adamw", lr=config.lr, weight_decay=config.weight_decay,
        fused=setup.device.type in ("cpu", "cuda"),
    )
    y_fit = ctx.labels[rows]
    log_prior = np.log(prior).astype(np.float32)
    adjust = config.class_weighting != "none"
    weight = None
    if config.class_weighting == "balanced":
        weight = torch.tensor(1.0 / (k * prior), dtype=torch.float32, device=setup.device)
    n_fit = len(rows)
    drop_last = n_fit > bs
    steps_per_epoch = n_fit // bs if drop_last else 1
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        _lr_lambda(steps_per_epoch * config.epochs, steps_per_epoch * config.warmup_epochs),
    )
    scaler = torch.amp.GradScaler("cuda") if setup.needs_grad_scaler else None
    augmenter = BatchAugmenter(
        flips=config.flips, rotate_degrees=config.rotate_degrees,
        scale_range=config.scale_range, translate_fraction=config.translate_fraction,
        brightness=config.brightness, contrast=config.contrast,
        probability=config.augment_probability,
    )
    sample_w = torch.tensor((1.0 / prior)[y_fit], dtype=torch.float64)
    ema = (
        WeightEma(model, horizon_steps=config.ema_epochs * steps_per_epoch)
        if config.ema_epochs > 0 else None
    )
    net = ema.module if ema is not None else model  # the weights that are evaluated and kept

    def evaluate(eval_rows: np.ndarray) -> tuple[float, float, float]:
        logits, _ = predict_rows(net, cache, eval_rows, setup=setup, norm=norm,
                                 image_size=config.image_size, batch_size=2 * bs,
                                 num_workers=config.num_workers)
        yt = torch.from_numpy(ctx.labels[eval_rows])
        loss = float(F.cross_entropy(torch.from_numpy(logits), yt,
                                     weight=None if weight is None else weight.cpu()))
        probs = _softmax(logits + (log_prior if adjust else 0.0))
        acc = float(np.mean(probs.argmax(1) == ctx.labels[eval_rows]))
        return loss, auc_score(ctx.labels[eval_rows], probs), acc

    history: list[dict[str, Any]] = []
    best_loss, best_epoch, best_state = math.inf, 0, None
    # Early epochs at a high learning rate are noisy on small inner splits: never stop
    # before half of the cosine schedule has run.
    min_epochs = max(config.warmup_epochs + config.patience, math.ceil(config.epochs / 2))
    # Weights from the first quarter of the schedule are never kept: they are under-trained,
    # and on a small, hard inner split their near-uniform predictions can have a lower log
    # loss than a better but more confident model (seen on BreastMNIST out-of-fold AUC).
    min_keep = min(max(1, math.ceil(config.epochs / 4)), config.epochs)
    last = min(stop_after or config.epochs, config.epochs)
    train_seconds, train_images = 0.0, 0
    bar = tqdm(range(1, last + 1), desc=desc, unit="epoch", disable=config.quiet,
               position=position, leave=True, dynamic_ncols=True)
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
            y = torch.from_numpy(ctx.labels[batch_rows]).to(setup.device)
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
            sched.step()
            if ema is not None:
                ema.update(model)
            total += float(loss.detach()) * len(batch_rows)
            count += len(batch_rows)
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
        history.append(rec)
        if (inner_val is not None and config.patience and epoch >= min_epochs
                and epoch - best_epoch >= config.patience):
            _log.info("%s: early stop at epoch %d (best inner-val loss at epoch %d)",
                      desc, epoch, best_epoch)
            break
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    return _Fit(net, history, best_epoch or len(history), train_seconds, train_images)


@dataclass
class _Member:
    """One model of a fold's ensemble: its selection pass and the kept fit."""

    seed: int
    select: _Fit
    fit: _Fit
    fit_rows: np.ndarray
    #: the kept networks with the log class prior added to their logits (zeros without
    #: class weighting): the refit (or selected) model, then the selected one if also kept
    kept: list[tuple[nn.Module, np.ndarray]]

    @property
    def fits(self) -> list[_Fit]:
        """The training passes run: the selection, then the refit if there was one."""
        return [self.select] if self.fit is self.select else [self.select, self.fit]


def member_seed(seed: int, fold: int, member: int) -> int:
    """The seed of ensemble member ``member`` of fold ``fold`` (member 0: :func:`fold_seed`)."""
    if member == 0:
        return fold_seed(seed, fold)
    return int(np.random.SeedSequence([seed, fold, member]).generate_state(1)[0] & 0x7FFFFFFF)


def _train_member(
    ctx: _RunContext,
    split: FoldSplit,
    config: TrainConfig,
    *,
    member: int,
    fold: int,
    setup: DeviceSetup,
    cache: ImageCache,
    norm: Normalization,
    position: int,
) -> _Member:
    """Select the epoch count on the inner split, then (``refit``) refit on all rows."""
    k = len(ctx.classes)
    seed = member_seed(config.seed, fold, member)
    desc = f"fold {fold}" + (f" model {member + 1}/{config.models_per_fold}"
                             if config.models_per_fold > 1 else "")

    def prior(rows: np.ndarray) -> np.ndarray:
        return _class_prior(ctx.labels[rows], k)

    def log_prior(rows: np.ndarray) -> np.ndarray:  # logit adjustment of a model fitted on rows
        if config.class_weighting == "none":
            return np.zeros(k, np.float32)
        return np.log(prior(rows)).astype(np.float32)

    # The refit keeps the selection pass's normalisation and seed, so it replays the
    # trajectory the inner split validated, only on more rows.
    common = dict(setup=setup, cache=cache, norm=norm, seed=seed, position=position)
    select = _fit(ctx, split.train, config, prior=prior(split.train), inner_val=split.inner_val,
                  stop_after=None, desc=desc, **common)
    fit, fit_rows = select, split.train
    if config.refit:
        # Model selection (the epoch count) is done; now use every training row of the
        # fold, inner split included, with the same seed and schedule up to that epoch.
        fit_rows = np.sort(np.concatenate([split.train, split.inner_val]))
        fit = _fit(ctx, fit_rows, config, prior=prior(fit_rows), inner_val=None,
                   stop_after=select.best_epoch, desc=f"{desc} refit", **common)
    kept = [(fit.net, log_prior(fit_rows))]
    if config.keep_selected and fit is not select:
        kept.append((select.net, log_prior(split.train)))
    return _Member(seed, select, fit, fit_rows, kept)


def _member_history(m: _Member, config: TrainConfig) -> dict[str, Any]:
    """Learning curves and selection of one ensemble member (JSON-ready)."""
    best = m.select.best_record
    return {
        "seed": m.seed,
        "epochs": _clean(m.select.history),
        "best_epoch": m.select.best_epoch,
        "stopped_early": len(m.select.history) < config.epochs,
        "refit": None if m.fit is m.select else {
            "n_rows": len(m.fit_rows), "epochs": _clean(m.fit.history),
        },
        "inner_val_auc": finite_or_none(best["inner_val_auc"]),
    }


def _ensemble_state(members: list[_Member]) -> dict[str, torch.Tensor]:
    """State dict of the kept model(s) (:func:`training.models.join_model_states`)."""
    return join_model_states([
        {key: v.detach().cpu().contiguous() for key, v in net.state_dict().items()}
        for m in members for net, _ in m.kept
    ])


def _train_fold(ctx: _RunContext, fold: int, config: TrainConfig, *, position: int) -> FoldResult:
    t_start = time.perf_counter()
    run = ctx.run
    split: FoldSplit = fold_split(
        ctx.folds, fold, ctx.labels, ctx.groups,
        inner_val_fraction=config.inner_val_fraction, seed=config.seed,
    )
    setup = resolve_device_setup(device=config.device, precision=config.precision)
    cache = ImageCache(run)
    norm = cache.channel_stats(split.train, seed=fold_seed(config.seed, fold))
    size = config.image_size
    eval_bs = 2 * config.batch_size
    workers = config.num_workers

    with deterministic(setup):
        members = [
            _train_member(ctx, split, config, member=m, fold=fold, setup=setup, cache=cache,
                          norm=norm, position=position)
            for m in range(config.models_per_fold)
        ]

        def predict(rows: np.ndarray, variant: str | None = None) -> tuple[np.ndarray, np.ndarray]:
            """Ensemble logits (log of the mean probability for > 1 model) and model 0's embeddings."""
            nets = [(net, lp) for m in members for net, lp in m.kept]
            outs = [predict_rows(net, cache, rows, setup=setup, norm=norm, image_size=size,
                                 batch_size=eval_bs, variant=variant, num_workers=workers)
                    for net, _ in nets]
            for lg, _ in outs:
                if not np.isfinite(lg).all():
                    raise ValueError(
                        f"fold {fold}: the model produced non-finite outputs (training "
                        "diverged); lower --lr, or use --precision fp32"
                    )
            logits = [lg + lp for (lg, _), (_, lp) in zip(outs, nets, strict=True)]
            if len(logits) == 1:
                return logits[0].astype(np.float32), outs[0][1]
            mean = np.mean([_softmax(lg) for lg in logits], axis=0)
            return np.log(np.clip(mean, 1e-12, None)).astype(np.float32), outs[0][1]

        def score(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
            logits, emb = predict(rows)
            masked = {v: _softmax(predict(rows, v)[0]) for v in config.masked_variants}
            return logits, _softmax(logits), emb, masked

        # All members are fitted on the same rows (the refit, or the training rows).
        fit_rows = members[0].fit_rows
        in_probs = _softmax(predict(fit_rows)[0])
        in_auc = auc_score(ctx.labels[fit_rows], in_probs)
        in_acc = float(np.mean(in_probs.argmax(1) == ctx.labels[fit_rows]))
        logits, probs, emb, masked = score(split.heldout)
        h_logits, h_probs, h_emb, h_masked = score(split.holdout)

    fold_auc = auc_score(ctx.labels[split.heldout], probs)
    atomic_write(checkpoint_path(run, fold), lambda t: torch.save(_ensemble_state(members), t))
    seconds = time.perf_counter() - t_start
    first = members[0]
    fits = [f for m in members for f in m.fits]
    first_history = _member_history(first, config)
    result = FoldResult(
        fold=fold, auc=fold_auc, in_sample_auc=in_auc,
        inner_val_auc=first.select.best_record["inner_val_auc"],
        best_epoch=first.select.best_epoch, epochs_run=len(first.select.history),
        n_train=len(fit_rows), n_inner_val=len(split.inner_val),
        n_heldout=len(split.heldout), n_holdout=len(split.holdout),
        seconds=seconds, train_seconds=sum(f.train_seconds for f in fits),
        train_images=sum(f.train_images for f in fits),
        setup=setup.to_dict(), refit=first.fit is not first.select,
        models=sum(len(m.kept) for m in members),
    )
    fold_history = {
        "fold": fold,
        "mode": "finetune",
        **first_history,
        "models": len(members),
        "kept_models": result.models,  # the models in fold_<k>.pt
        "other_models": [_member_history(m, config) for m in members[1:]],
        "in_sample_auc": finite_or_none(in_auc),
        "in_sample_acc": finite_or_none(in_acc),
        "oof_auc": finite_or_none(fold_auc),
        "n_train": result.n_train,
        "n_inner_val": result.n_inner_val,
        "n_heldout": result.n_heldout,
        "normalization": norm.to_dict(),
        "setup": setup.to_dict(),
    }
    outputs = FoldOutputs(
        rows=split.heldout, probs=probs, logits=logits, embeddings=emb, masked=masked,
        holdout_rows=split.holdout, holdout_probs=h_probs, holdout_logits=h_logits,
        holdout_embeddings=h_emb, holdout_masked=h_masked,
    )
    write_fold_outputs(run, fold, outputs, history=fold_history, result=result,
                       marker=_marker(config, ctx.fingerprint))
    _log.info("fold %d: OOF AUC %.3f (in-sample %.3f), best epoch %d/%d%s%s, %.1fs",
              fold, fold_auc, in_auc, result.best_epoch, result.epochs_run,
              ", refit on all training rows" if result.refit else "",
              f", {result.models} models" if result.models > 1 else "", seconds)
    return result


def _clean(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in records]
