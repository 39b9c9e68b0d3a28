"""One cross-validation fold as an independent, resumable unit of work.

:func:`train_fold` is a function of the run directory, the fold index and the
config only. It recomputes the (deterministic) fold assignment, trains on the
fold's training rows with early stopping on an inner validation split, refits
the model on all training rows for the chosen number of epochs
(``TrainConfig.refit``), scores the fold's out-of-fold rows (and the
holdout-split rows) on the original and the masked images, and writes only its
own outputs (:mod:`training.fold_outputs`). With ``TrainConfig.models_per_fold``
> 1 it does this for each model (own seed), with ``TrainConfig.keep_selected``
it also keeps each selected model next to its refit, and it writes the mean of
the kept models' probabilities.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from audit.metrics import auc_score
from audit.rundir import RunDir, atomic_write
from audit.stats import finite_or_none
from training.budget import resolve_for_context
from training.config import TrainConfig
from training.dataset import ImageCache
from training.deadline import Deadline
from training.device import resolve_device_setup
from training.fold_outputs import (
    FoldOutputs,
    FoldResult,
    ScoredRows,
    checkpoint_path,
    fold_is_done,
    fold_marker,
    load_fold_result,
    write_fold_outputs,
)
from training.loop import FitContext, FitResult, class_prior, fit_model
from training.messages import NON_FINITE_OUTPUTS
from training.models import join_model_states
from training.predict import predict_rows, softmax
from training.reproducibility import deterministic, fold_seed, member_seed, torch_threads
from training.run_context import RunContext, load_context
from training.splits import FoldSplit, fold_split

__all__ = ["MemberMap", "ensemble_predict", "train_fold", "train_fold_member", "train_member"]

_log = logging.getLogger(__name__)


@dataclass
class _Member:
    """One model of a fold's ensemble: its selection pass and the kept fit."""

    seed: int
    select: FitResult
    fit: FitResult
    fit_rows: np.ndarray
    #: the kept networks with the log class prior added to their logits (zeros without
    #: class weighting): the refit (or selected) model, then the selected one if also kept
    kept: list[tuple[nn.Module, np.ndarray]]

    @property
    def fits(self) -> list[FitResult]:
        """The training passes run: the selection, then the refit if there was one."""
        return [self.select] if self.fit is self.select else [self.select, self.fit]


def train_member(fc: FitContext, split: FoldSplit, *, member: int, fold: int) -> _Member:
    """Select the epoch count on the inner split, then (``refit``) refit on all rows."""
    config = fc.config
    k = fc.n_classes
    seed = member_seed(config.seed, fold, member)
    desc = f"fold {fold}" + (f" model {member + 1}/{config.models_per_fold}"
                             if config.models_per_fold > 1 else "")

    def log_prior(rows: np.ndarray) -> np.ndarray:  # logit adjustment of a model fitted on rows
        if config.class_weighting == "none":
            return np.zeros(k, np.float32)
        return np.log(class_prior(fc.labels[rows], k)).astype(np.float32)

    if not config.select_epochs:
        # A short schedule: nothing to select, one pass on all the fold's training rows.
        rows = np.sort(np.concatenate([split.train, split.inner_val]))
        only = fit_model(fc, rows, seed=seed, desc=desc)
        return _Member(seed, only, only, rows, [(only.net, log_prior(rows))])
    # The refit keeps the selection pass's normalisation and seed, so it replays the
    # trajectory the inner split validated, only on more rows.
    select = fit_model(fc, split.train, seed=seed, inner_val=split.inner_val, desc=desc)
    fit, fit_rows = select, split.train
    if config.refit and not _refit_fits(fc, select, split):
        _log.info("%s: no refit, it would not end before the time budget's deadline", desc)
    elif config.refit:
        # Model selection (the epoch count) is done; now use every training row of the
        # fold, inner split included, with the same seed and schedule up to that epoch.
        fit_rows = np.sort(np.concatenate([split.train, split.inner_val]))
        fit = fit_model(fc, fit_rows, seed=seed, stop_after=select.best_epoch,
                        desc=f"{desc} refit")
    kept = [(fit.net, log_prior(fit_rows))]
    if config.keep_selected and fit is not select:
        kept.append((select.net, log_prior(split.train)))
    return _Member(seed, select, fit, fit_rows, kept)


def ensemble_predict(
    nets: list[tuple[nn.Module, np.ndarray]],
    fc: FitContext,
    rows: np.ndarray,
    *,
    variant: str | None = None,
    fold: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble logits of ``nets`` on ``rows`` and the first model's embeddings.

    Parameters
    ----------
    nets : list of (torch.nn.Module, numpy.ndarray)
        Kept networks with the log class prior ``(K,)`` added to their logits.
    fc : FitContext
        Cache, normalisation, device and batch settings.
    rows : numpy.ndarray
        ``(M,)`` manifest rows.
    variant : str, optional
        Masked variant to score instead of the original images.
    fold : int
        For the error message.

    Returns
    -------
    logits : numpy.ndarray
        ``(M, K)`` float32 (log of the mean probability for more than one model).
    embeddings : numpy.ndarray
        ``(M, D)`` of the first model.

    Raises
    ------
    ValueError
        When a model's outputs are not finite (:data:`training.messages.NON_FINITE_OUTPUTS`).
    """
    config = fc.config
    outs = [predict_rows(net, fc.cache, rows, setup=fc.setup, norm=fc.norm,
                         image_size=config.image_size, batch_size=2 * config.batch_size,
                         variant=variant, num_workers=config.num_workers)
            for net, _ in nets]
    for lg, _ in outs:
        if not np.isfinite(lg).all():
            raise ValueError(NON_FINITE_OUTPUTS.format(fold=fold))
    logits = [lg + lp for (lg, _), (_, lp) in zip(outs, nets, strict=True)]
    if len(logits) == 1:
        return logits[0].astype(np.float32), outs[0][1]
    mean = np.mean([softmax(lg) for lg in logits], axis=0)
    return np.log(np.clip(mean, 1e-12, None)).astype(np.float32), outs[0][1]


def _refit_fits(fc: FitContext, select: FitResult, split: FoldSplit) -> bool:
    """Whether a refit can end before ``fc.deadline`` (always, without one).

    Its cost is estimated from the selection pass: the training seconds of its
    first ``best_epoch`` epochs, scaled by the refit's larger row count.
    """
    if fc.deadline is None:
        return True
    if select.deadline_hit:
        return False
    per_row = sum(r["train_seconds"] for r in select.history[: select.best_epoch]) / len(split.train)
    return per_row * (len(split.train) + len(split.inner_val)) < fc.deadline.remaining()


def _clean(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in records]


def _member_history(m: _Member, config: TrainConfig) -> dict[str, Any]:
    """Learning curves and selection of one ensemble member (JSON-ready)."""
    best = m.select.best_record
    return {
        "seed": m.seed,
        "epochs": _clean(m.select.history),
        "best_epoch": m.select.best_epoch,
        "stopped_early": len(m.select.history) < config.epochs,
        "stopped_by_deadline": m.select.deadline_hit or m.fit.deadline_hit,
        "refit_skipped_for_deadline": bool(config.select_epochs and config.refit)
        and m.fit is m.select,
        "selected_on_inner_split": bool(config.select_epochs),
        "refit": None if m.fit is m.select else {
            "n_rows": len(m.fit_rows), "epochs": _clean(m.fit.history),
        },
        "inner_val_auc": finite_or_none(best.get("inner_val_auc", float("nan"))),
    }


def _ensemble_state(members: list[_Member]) -> dict[str, torch.Tensor]:
    """State dict of the kept model(s) (:func:`training.models.join_model_states`)."""
    return join_model_states([
        {key: v.detach().cpu().contiguous() for key, v in net.state_dict().items()}
        for m in members for net, _ in m.kept
    ])


#: Trains the given members of a fold elsewhere (e.g. one Ray task each) and returns them
#: in order: ``member_map(run_path, fold, config, members)``.
MemberMap = Callable[[str, int, TrainConfig, list[int]], list[_Member]]


def _fold_setup(
    ctx: RunContext, fold: int, config: TrainConfig, *, position: int
) -> tuple[FoldSplit, FitContext]:
    """The fold's split and fit context (device, image cache, normalisation)."""
    split = fold_split(
        ctx.folds, fold, ctx.labels, ctx.groups,
        inner_val_fraction=config.inner_val_fraction, seed=config.seed,
    )
    setup = resolve_device_setup(device=config.device, precision=config.precision)
    cache = ImageCache(ctx.run)
    norm = cache.channel_stats(split.train, seed=fold_seed(config.seed, fold))
    fc = FitContext(config=config, labels=ctx.labels, n_classes=len(ctx.classes), setup=setup,
                    cache=cache, norm=norm, position=position)
    return split, fc


def train_fold_member(
    run_dir: RunDir | str | os.PathLike[str], fold: int, config: TrainConfig, member: int
) -> _Member:
    """Train one model of a fold on its own (a Ray task of its own; see ``member_map``).

    The same split, normalisation, seed and threads as inside :func:`train_fold`, so
    the member is bitwise the one the fold would have trained itself.

    Parameters
    ----------
    run_dir : RunDir or path
    fold : int
    config : TrainConfig
        As given to :func:`train_fold` (``stop_at`` must be unset: a time budget
        trains members one after another).
    member : int
        Index in ``[0, config.models_per_fold)``.

    Returns
    -------
    _Member
        The member's training passes and kept networks.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if config.stop_at is not None:
        raise ValueError("train_fold_member cannot share a time budget's deadline; train the "
                         "fold's members in the fold (member_map=None)")
    ctx = load_context(run, config)
    config = resolve_for_context(config, ctx)
    with torch_threads(config.threads):
        split, fc = _fold_setup(ctx, fold, config, position=0)
        with deterministic(fc.setup):
            return train_member(fc, split, member=member, fold=fold)


def _train_fold(
    ctx: RunContext,
    fold: int,
    config: TrainConfig,
    *,
    position: int,
    member_map: MemberMap | None = None,
) -> FoldResult:
    t_start = time.perf_counter()
    run = ctx.run
    split, fc = _fold_setup(ctx, fold, config, position=position)
    setup, norm = fc.setup, fc.norm
    fold_deadline = None
    if config.stop_at is not None:
        # An equal share of the time left for this fold and the ones after it (sequential
        # folds, as the --time-budget planner runs them).
        fold_deadline = Deadline(config.stop_at).share(config.folds - fold)

    with deterministic(setup):
        members = []
        if member_map is not None and config.models_per_fold > 1 and fold_deadline is None:
            members = member_map(str(run.path), fold, config, list(range(config.models_per_fold)))
        for m in range(len(members), config.models_per_fold):
            deadline = None if fold_deadline is None else fold_deadline.share(config.models_per_fold - m)
            members.append(train_member(dataclasses.replace(fc, deadline=deadline), split,
                                         member=m, fold=fold))
        nets = [(net, lp) for m in members for net, lp in m.kept]

        def predict(rows: np.ndarray, variant: str | None = None) -> tuple[np.ndarray, np.ndarray]:
            return ensemble_predict(nets, fc, rows, variant=variant, fold=fold)

        def score(rows: np.ndarray) -> ScoredRows:
            logits, emb = predict(rows)
            masked = {v: softmax(predict(rows, v)[0]) for v in config.masked_variants}
            return ScoredRows(rows=rows, probs=softmax(logits), logits=logits, embeddings=emb,
                              masked=masked)

        # All members are fitted on the same rows (the refit, or the training rows).
        fit_rows = members[0].fit_rows
        in_probs = softmax(predict(fit_rows)[0])
        in_auc = auc_score(ctx.labels[fit_rows], in_probs)
        in_acc = float(np.mean(in_probs.argmax(1) == ctx.labels[fit_rows]))
        outputs = FoldOutputs(oof=score(split.oof), holdout=score(split.holdout),
                              in_sample_rows=fit_rows, in_sample_probs=in_probs)

    fold_auc = auc_score(ctx.labels[split.oof], outputs.oof.probs)
    atomic_write(checkpoint_path(run, fold), lambda t: torch.save(_ensemble_state(members), t))
    seconds = time.perf_counter() - t_start
    first = members[0]
    fits = [f for m in members for f in m.fits]
    result = FoldResult(
        fold=fold, auc=fold_auc, in_sample_auc=in_auc,
        inner_val_auc=first.select.best_record.get("inner_val_auc", float("nan")),
        best_epoch=first.select.best_epoch, epochs_run=len(first.select.history),
        n_train=len(fit_rows), n_inner_val=len(split.inner_val),
        n_oof=len(split.oof), n_holdout=len(split.holdout),
        seconds=seconds, train_seconds=sum(f.train_seconds for f in fits),
        train_images=sum(f.train_images for f in fits),
        setup=setup.to_dict(), refit=first.fit is not first.select,
        models=sum(len(m.kept) for m in members),
    )
    fold_history = {
        "fold": fold,
        "mode": "finetune",
        **_member_history(first, config),
        "models": len(members),
        "kept_models": result.models,  # the models in fold_<k>.pt
        "other_models": [_member_history(m, config) for m in members[1:]],
        "in_sample_auc": finite_or_none(in_auc),
        "in_sample_acc": finite_or_none(in_acc),
        "oof_auc": finite_or_none(fold_auc),
        "n_train": result.n_train,
        "n_inner_val": result.n_inner_val,
        "n_oof": result.n_oof,
        "normalization": norm.to_dict(),
        "setup": setup.to_dict(),
    }
    write_fold_outputs(run, fold, outputs, history=fold_history, result=result,
                       marker=fold_marker(config, ctx.fingerprint))
    _log.info("fold %d: OOF AUC %.3f (in-sample %.3f), best epoch %d/%d%s%s, %.1fs",
              fold, fold_auc, in_auc, result.best_epoch, result.epochs_run,
              ", refit on all training rows" if result.refit else "",
              f", {result.models} models" if result.models > 1 else "", seconds)
    return result


def train_fold(
    run_dir: RunDir | str | os.PathLike[str],
    fold: int,
    config: TrainConfig,
    *,
    position: int = 0,
    member_map: MemberMap | None = None,
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
    member_map : callable, optional
        Trains the fold's models elsewhere, all at once (the Ray executor gives
        each its own task, :func:`train_fold_member`); ``None`` trains them here
        one after another. Used only with several models per fold and no time
        budget; the fold's scoring and outputs stay here.

    Returns
    -------
    FoldResult
        Also when the fold was already done under the same config and data
        (then ``reused=True`` and nothing is retrained).

    Raises
    ------
    ValueError
        Bad fold index, mode, data that cannot be split by patient, or a
        model whose outputs are not finite
        (:data:`training.messages.NON_FINITE_OUTPUTS`).
    TypeError
        When ``config`` is not a :class:`TrainConfig`.
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
    config = resolve_for_context(config, ctx)  # the budget-dependent "auto" fields
    if fold_is_done(run, fold, config, ctx.fingerprint):
        _log.info("fold %d of %s already done with the same config and data; reusing it",
                  fold, run.path)
        return load_fold_result(run, fold)[0]
    with torch_threads(config.threads):
        return _train_fold(ctx, fold, config, position=position, member_map=member_map)
