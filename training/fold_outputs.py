"""The files one fold writes, its resume marker and its summary.

A fold scores two row sets with its model(s), each saved as one
:class:`ScoredRows`: its out-of-fold rows (``oof``, the rows of fold ``k``)
and the rows of the holdout split (``holdout``, fold ``-1``, scored by every
fold's model and averaged later). Layout (fold-output format
:data:`FOLD_FORMAT`)::

    train/fold_<k>.pt                     state dict of the kept model(s) (keys
                                          prefixed ``model<i>.`` when several)
    train/fold_<k>/<part>_rows.npy        (M,) int64 row indices (manifest order)
    train/fold_<k>/<part>_probs.npy       (M, K) float32
    train/fold_<k>/<part>_logits.npy      (M, K) float32
    train/fold_<k>/<part>_embeddings.npy  (M, D) float32
    train/fold_<k>/<part>_masked_<v>.npy  (M, K) float32 per masked variant
    train/fold_<k>/insample_rows.npy      (R,) int64 rows the kept model(s) were fitted on
    train/fold_<k>/insample_probs.npy     (R, K) float32 the fold's prediction on them
    train/fold_<k>/history.json           learning curves and fold metrics
    train/fold_<k>/done                   JSON marker written last

with ``<part>`` ``oof`` or ``holdout``. Every file is written atomically and
``done`` last, so a fold either has all its outputs or is retrained. A
finished fold is reused only when the marker's format, config hash and data
fingerprint match the current ones; a fold directory of an older format is
therefore retrained, never read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.rundir import RunDir, atomic_write
from training.config import TrainConfig

__all__ = [
    "DONE",
    "FOLD_FORMAT",
    "WORK_DIR",
    "FoldOutputs",
    "FoldResult",
    "ScoredRows",
    "checkpoint_path",
    "fold_dir",
    "fold_is_done",
    "fold_marker",
    "load_fold_outputs",
    "load_fold_result",
    "published_checkpoint",
    "write_fold_outputs",
]

#: Name of the marker file a finished fold writes last.
DONE = "done"

#: Version of the fold-output layout. 1 (no ``format`` key in the marker): the
#: out-of-fold arrays without a prefix (``rows.npy``) and ``n_heldout`` in the
#: summary; 2: ``oof_*.npy`` and ``n_oof``; 3: ``insample_*.npy`` (the in-sample
#: probabilities, for the overfitting check).
FOLD_FORMAT = 3

_PARTS = ("oof", "holdout")


@dataclass(frozen=True)
class FoldResult:
    """Summary of one finished fold (arrays stay on disk: :func:`load_fold_outputs`).

    Attributes
    ----------
    fold : int
        Fold index.
    auc : float
        Out-of-fold AUC of this fold's out-of-fold rows (macro OvR for K > 2).
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
    n_train, n_inner_val, n_oof, n_holdout : int
        Rows the kept model was fitted on (training rows, plus the inner split
        after a refit), inner-validation, out-of-fold and holdout-split rows.
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
    n_oof: int
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
class ScoredRows:
    """A fold's outputs on one set of rows (rows are manifest row indices).

    Attributes
    ----------
    rows : numpy.ndarray
        ``(M,)`` int64 (may be empty).
    probs, logits : numpy.ndarray
        ``(M, K)`` float32.
    embeddings : numpy.ndarray
        ``(M, D)`` float32.
    masked : dict of str to numpy.ndarray
        ``(M, K)`` float32 probabilities per masked variant.
    """

    rows: np.ndarray
    probs: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray
    masked: dict[str, np.ndarray]


@dataclass(frozen=True)
class FoldOutputs:
    """The arrays one fold writes.

    Attributes
    ----------
    oof : ScoredRows
        The fold's out-of-fold rows (fold ``k``), scored by the model trained
        without them.
    holdout : ScoredRows
        The rows of the holdout split (fold ``-1``), scored by this fold's
        model(s); empty without a holdout split.
    in_sample_rows : numpy.ndarray
        ``(R,)`` int64 rows the fold's kept model(s) were fitted on (the refit's
        rows: training rows plus the inner split).
    in_sample_probs : numpy.ndarray
        ``(R, K)`` float32 the fold's prediction on those rows (in-sample: what
        the overfitting check compares with the out-of-fold prediction).
    """

    oof: ScoredRows
    holdout: ScoredRows
    in_sample_rows: np.ndarray
    in_sample_probs: np.ndarray


#: The training work area (resume state), relative to the run directory. Folds write
#: here; :func:`training.train_run` publishes ``oof/`` and ``train/`` from it in one
#: transaction, so a failed or interrupted retrain never touches the published run.
WORK_DIR = ".work/train"


def fold_dir(run: RunDir, fold: int) -> Path:
    """``.work/train/fold_<k>/``: one fold's outputs while a run trains (resume state)."""
    return run.path / WORK_DIR / f"fold_{fold}"


def checkpoint_path(run: RunDir, fold: int) -> Path:
    """``.work/train/fold_<k>/model.pt``: the fold's kept model(s) while a run trains."""
    return fold_dir(run, fold) / "model.pt"


def published_checkpoint(run: RunDir, fold: int) -> Path:
    """``train/fold_<k>.pt``: the published checkpoint of fold ``fold`` (state dict only)."""
    return run.path / "train" / f"fold_{fold}.pt"


def fold_marker(config: TrainConfig, fingerprint: str) -> dict[str, Any]:
    """What a fold's ``done`` marker must hold for the fold to be reused.

    Parameters
    ----------
    config : TrainConfig
        Its :meth:`~TrainConfig.config_hash` is stored.
    fingerprint : str
        :func:`training.run_context.data_fingerprint` of the run.

    Returns
    -------
    dict
        ``format``, ``config_hash`` and ``data_fingerprint``.
    """
    return {"format": FOLD_FORMAT, "config_hash": config.config_hash(),
            "data_fingerprint": fingerprint}


def fold_is_done(run: RunDir, fold: int, config: TrainConfig, fingerprint: str) -> bool:
    """Whether fold ``fold`` finished in this format, under the same config and data.

    Parameters
    ----------
    run : RunDir
    fold : int
    config : TrainConfig
    fingerprint : str
        From :func:`training.run_context.data_fingerprint`.

    Returns
    -------
    bool
        False also for a fold written in another fold-output format.
    """
    p = fold_dir(run, fold) / DONE
    if not p.is_file():
        return False
    try:
        marker = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    want = fold_marker(config, fingerprint)
    return all(marker.get(k) == v for k, v in want.items())


def _read_marker(run: RunDir, fold: int) -> dict[str, Any]:
    """The ``done`` marker of a finished fold of the current format."""
    p = fold_dir(run, fold) / DONE
    if not p.is_file():
        raise FileNotFoundError(f"fold {fold} of {run.path} has not finished (no {p})")
    marker = json.loads(p.read_text(encoding="utf-8"))
    found = marker.get("format", 1)
    if found != FOLD_FORMAT:
        raise ValueError(
            f"fold {fold} of {run.path} was written in fold-output format {found}; this "
            f"version reads format {FOLD_FORMAT}. Train the run again: folds of another "
            "format are retrained"
        )
    return marker


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)

    atomic_write(path, write)


def _save_part(d: Path, part: str, scored: ScoredRows) -> None:
    _save_npy(d / f"{part}_rows.npy", scored.rows.astype(np.int64))
    _save_npy(d / f"{part}_probs.npy", scored.probs.astype(np.float32))
    _save_npy(d / f"{part}_logits.npy", scored.logits.astype(np.float32))
    _save_npy(d / f"{part}_embeddings.npy", scored.embeddings.astype(np.float32))
    for name, arr in scored.masked.items():
        _save_npy(d / f"{part}_masked_{name}.npy", arr.astype(np.float32))


def _load_part(d: Path, part: str, variants: tuple[str, ...]) -> ScoredRows:
    def ld(name: str) -> np.ndarray:
        return np.load(d / f"{part}_{name}.npy", allow_pickle=False)

    return ScoredRows(rows=ld("rows"), probs=ld("probs"), logits=ld("logits"),
                      embeddings=ld("embeddings"), masked={v: ld(f"masked_{v}") for v in variants})


def write_fold_outputs(
    run: RunDir,
    fold: int,
    outputs: FoldOutputs,
    *,
    history: dict[str, Any],
    result: FoldResult,
    marker: dict[str, Any],
) -> None:
    """Write a fold's arrays and history atomically, then the ``done`` marker.

    Arrays left in the fold directory by an earlier attempt (another format,
    other masked variants) are removed first.

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
        From :func:`fold_marker`.
    """
    d = fold_dir(run, fold)
    (d / DONE).unlink(missing_ok=True)
    if d.is_dir():
        for stale in d.glob("*.npy"):
            stale.unlink()
    for part in _PARTS:
        _save_part(d, part, getattr(outputs, part))
    _save_npy(d / "insample_rows.npy", outputs.in_sample_rows.astype(np.int64))
    _save_npy(d / "insample_probs.npy", outputs.in_sample_probs.astype(np.float32))
    rel = d.relative_to(run.path).as_posix()
    run.write_json(f"{rel}/history.json", history)
    run.write_json(f"{rel}/{DONE}", {**marker, "result": result.to_dict()})


def load_fold_outputs(run: RunDir, fold: int, variants: tuple[str, ...]) -> FoldOutputs:
    """Read the arrays a finished fold wrote (see the module docstring).

    Parameters
    ----------
    run : RunDir
    fold : int
    variants : tuple of str
        Masked variants to read.

    Returns
    -------
    FoldOutputs

    Raises
    ------
    FileNotFoundError
        When the fold has not finished.
    ValueError
        When the fold was written in another fold-output format.
    """
    _read_marker(run, fold)
    d = fold_dir(run, fold)
    return FoldOutputs(
        **{part: _load_part(d, part, variants) for part in _PARTS},
        in_sample_rows=np.load(d / "insample_rows.npy", allow_pickle=False),
        in_sample_probs=np.load(d / "insample_probs.npy", allow_pickle=False),
    )


def load_fold_result(run: RunDir, fold: int) -> tuple[FoldResult, dict[str, Any]]:
    """The :class:`FoldResult` (marked ``reused``) and history of a finished fold.

    Raises
    ------
    FileNotFoundError
        When the fold has not finished.
    ValueError
        When the fold was written in another fold-output format.
    """
    marker = _read_marker(run, fold)
    res = {k: (float("nan") if v is None else v) for k, v in marker["result"].items()}
    res["reused"] = True
    history = json.loads((fold_dir(run, fold) / "history.json").read_text(encoding="utf-8"))
    return FoldResult(**res), history
