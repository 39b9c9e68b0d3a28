"""K-fold cross-validated training of a whole run directory.

:func:`train_run` assigns patient-grouped folds, trains the folds (in this
process or in parallel worker processes), reuses folds that already finished
under the same config and data, scores holdout-split rows with the fold
ensemble, and assembles the run-directory artifacts::

    oof/pred_probs.npy     (N, K) float32  out-of-fold probabilities
    oof/logits.npy         (N, K) float32  out-of-fold logits
    oof/embeddings.npy     (N, D) float32  penultimate features
    oof/folds.npy          (N,)   int16    fold of each row, -1 = holdout split
    oof/masked/<v>.npy     (N, K) float32  probabilities on masked images
    train/in_sample_probs.npy (N, F, K) float32  fold f's prediction on the rows it
                           was fitted on (NaN elsewhere): in-sample, for the
                           overfitting check
    train/history.json     learning curves of every fold
    train/learning_curve.json  OOF AUC per training fraction (``learning_curve=``)
    run.json               key ``train``: config, seeds, versions, timings, metrics

Holdout rows (fold ``-1``) get the mean of the fold models' probabilities; their
logits are the log of that mean (so ``softmax(logits) == pred_probs``) and their
embeddings come from the fold-0 model (averaging features of different models
would mean nothing).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.consistency import artifact_digests
from audit.metrics import accuracy_with_ci, auc_score, auc_with_ci
from audit.rundir import LEARNING_CURVE, RunDir, stale_after
from audit.stats import Estimate, finite_or_none
from training.budget import resolve_for_context
from training.config import TrainConfig
from training.executors import Executor, LocalExecutor
from training.fold_outputs import (
    WORK_DIR,
    FoldResult,
    checkpoint_path,
    fold_is_done,
    load_fold_outputs,
    load_fold_result,
)
from training.models import check_model_name
from training.reproducibility import fold_seed
from training.run_context import RunContext, load_context
from training.splits import HOLDOUT_FOLD

__all__ = ["TrainSummary", "train_run"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSummary:
    """What :func:`train_run` did, with the headline metrics.

    Attributes
    ----------
    oof_auc : Estimate
        Out-of-fold AUC (macro one-vs-rest for K > 2) with its 95 % CI.
    oof_acc : Estimate
        Out-of-fold accuracy with a Wilson 95 % CI.
    folds : list of FoldResult
        Per-fold results (``reused`` marks resumed folds).
    holdout_auc, holdout_acc : Estimate or None
        Ensemble scores on the holdout split, when one was requested.
    masked_auc : dict of str to float
        Out-of-fold AUC on each masked variant.
    seconds : float
        Wall time of this call.
    setup : dict
        Device and precision used.
    record : dict
        What was stored under ``run.json['train']``.
    text : str
        A one-screen human summary.
    """

    oof_auc: Estimate
    oof_acc: Estimate
    folds: list[FoldResult]
    holdout_auc: Estimate | None
    holdout_acc: Estimate | None
    masked_auc: dict[str, float]
    seconds: float
    setup: dict[str, Any]
    record: dict[str, Any] = field(repr=False)
    text: str = field(repr=False)


def _versions() -> dict[str, str]:
    import sklearn
    import timm
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def _clean_stale(run: RunDir, config: TrainConfig) -> None:
    """Remove work-area fold folders beyond ``config.folds`` (from a run with more folds)."""
    work = run.path / WORK_DIR
    if not work.is_dir():
        return
    for p in work.glob("fold_*"):
        try:
            k = int(p.name.split("_", 1)[1])
        except ValueError:
            continue
        if k >= config.folds:
            _log.info("removing stale %s (this run has %d folds)", p, config.folds)
            shutil.rmtree(p, ignore_errors=True)


def train_run(
    run_dir: RunDir | str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    extra_record: dict[str, Any] | None = None,
    executor: Executor | None = None,
    learning_curve: Sequence[float] | str | None = None,
) -> TrainSummary:
    """Cross-validate a model on an ingested run directory and write the OOF artifacts.

    Parameters
    ----------
    run_dir : RunDir or path
        Run directory with ``manifest.parquet``, ``images.npy`` and ``run.json``
        (``classes``), as written by ``medaudit ingest``.
    config : TrainConfig, optional
        Defaults to ``TrainConfig()``. Its "auto" fields (``None``, see
        :attr:`TrainConfig.auto_fields`) are derived from the budget
        (:func:`training.budget.budget_defaults`); ``run.json['train']``
        records the resolved config and, under ``auto_fields``, what was derived.
    extra_record : dict, optional
        JSON-ready entries added to ``run.json['train']`` (the ``--time-budget``
        planner records its plan under ``budget``).
    executor : Executor, optional
        Where the folds train (:mod:`training.executors`): default
        :class:`~training.executors.LocalExecutor` (this process, or
        ``config.jobs`` local processes); :class:`~training.executors.RayExecutor`
        runs each fold as a Ray task. Results do not depend on it (same seed,
        data and CPU thread count per fold).
    learning_curve : sequence of float or str, optional
        Fractions of each fold's training rows (e.g. ``(0.25, 0.5, 0.75, 1.0)``):
        after the folds, retrain each fold on patient-grouped fractions of its
        training rows and write ``train/learning_curve.json``
        (:mod:`training.learning_curve`; in fine-tuning mode it costs about
        ``sum(fractions < 1)`` times the training time).

    Returns
    -------
    TrainSummary

    Raises
    ------
    ValueError
        When the data cannot be split by patient into ``config.folds`` folds,
        the holdout split is missing, or the config is inconsistent with the data.
    audit.rundir.RunArtifactMissingError
        When the run directory has not been ingested.

    audit.transaction.RunDirBusyError
        When another process is writing the run directory.
    training.executors.ExecutorUnavailableError
        When the executor cannot run (Ray not installed, cluster unreachable).
    training.executors.FoldFailedError
        When folds failed on their workers (one line per fold).

    Notes
    -----
    The run directory changes as one transaction (:mod:`audit.transaction`): folds
    work in ``.work/train/`` and the published ``oof/``, ``train/`` and
    ``run.json['train']`` are replaced only when every fold has finished, so a
    failed, interrupted or mistyped retrain leaves the previous results whole
    (findings and reports made from them are removed when the new ones publish).
    Rerunning the same call after an interruption retrains only the folds whose
    ``done`` marker is missing or was written under another config or other
    data; the final arrays equal those of an uninterrupted run (same seed, data
    and CPU thread count).
    """
    t0 = time.perf_counter()
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    check_model_name(config.model)
    fractions = None
    if learning_curve is not None:
        from training.learning_curve import parse_fractions

        fractions = parse_fractions(learning_curve)
    with run.transaction("medaudit train") as staged:
        return _train_and_publish(run, staged, config, t0, dict(extra_record or {}),
                                  executor or LocalExecutor(), fractions)


def _train_and_publish(
    run: RunDir, staged: RunDir, config: TrainConfig, t0: float, extra: dict[str, Any],
    executor: Executor,
    fractions: tuple[float, ...] | None = None,
) -> TrainSummary:
    ctx = load_context(run, config)
    auto = config.auto_fields
    config = resolve_for_context(config, ctx)  # the budget-dependent "auto" fields
    extra["auto_fields"] = {name: getattr(config, name) for name in auto}
    extra["executor"] = executor.describe(config.threads)
    _clean_stale(run, config)

    done_before = [k for k in range(config.folds) if fold_is_done(run, k, config, ctx.fingerprint)]
    todo = [k for k in range(config.folds) if k not in done_before]
    if done_before:
        _log.info("resuming: fold(s) %s already done with this config and data", done_before)

    if config.mode == "linear-probe":
        from training.linear_probe import train_linear_probe

        fresh = train_linear_probe(ctx, config, todo)
    else:
        fresh = executor.run_folds(run, config, todo)

    fold_results: list[FoldResult] = []
    histories: list[dict[str, Any]] = []
    for k in range(config.folds):
        res, hist = load_fold_result(run, k)
        if k in fresh:
            res = fresh[k]
        fold_results.append(res)
        histories.append(hist)

    curve = None
    if fractions is not None:
        from training.learning_curve import learning_curve

        curve = learning_curve(ctx, config, fractions, fold_results)
    stale, _ = stale_after("train")
    staged.remove([p for p in stale if p != ".work"])  # the work area stays: resume state
    return _assemble(run, staged, ctx, config, fold_results, histories, time.perf_counter() - t0,
                     extra, curve)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # the work copy is replaced by rename, never written in place
    except OSError:
        shutil.copyfile(src, dst)


def _assemble(
    run: RunDir,
    staged: RunDir,
    ctx: RunContext,
    config: TrainConfig,
    fold_results: list[FoldResult],
    histories: list[dict[str, Any]],
    elapsed_before: float,
    extra: dict[str, Any],
    curve: dict[str, Any] | None = None,
) -> TrainSummary:
    t0 = time.perf_counter()
    n, k = len(ctx.labels), len(ctx.classes)
    variants = tuple(config.masked_variants)
    outs = [load_fold_outputs(run, f, variants) for f in range(config.folds)]
    d = outs[0].oof.embeddings.shape[1]  # (0, D) when a fold has no rows
    probs = np.full((n, k), np.nan, np.float32)
    logits = np.full((n, k), np.nan, np.float32)
    emb = np.full((n, d), np.nan, np.float32)
    masked = {v: np.full((n, k), np.nan, np.float32) for v in variants}
    for o in (o.oof for o in outs):
        probs[o.rows], logits[o.rows], emb[o.rows] = o.probs, o.logits, o.embeddings
        for v in variants:
            masked[v][o.rows] = o.masked[v]
    hold = np.flatnonzero(ctx.folds == HOLDOUT_FOLD)
    if hold.size:
        parts = [o.holdout for o in outs]
        for h in parts:
            if not np.array_equal(h.rows, hold):
                raise ValueError(
                    f"fold outputs in {run.path / WORK_DIR} disagree on the holdout rows; delete "
                    f"the {WORK_DIR}/ folder and train again"
                )
        mean_probs = np.mean([h.probs for h in parts], axis=0)
        probs[hold] = mean_probs
        logits[hold] = np.log(np.clip(mean_probs, 1e-12, None))
        emb[hold] = parts[0].embeddings
        for v in variants:
            masked[v][hold] = np.mean([h.masked[v] for h in parts], axis=0)
    if np.isnan(probs).any():
        missing = np.flatnonzero(np.isnan(probs).any(1))
        raise ValueError(
            f"{missing.size} row(s) of {run.path} got no prediction (first: row {missing[0]}); the "
            f"fold outputs are inconsistent with the fold assignment: delete {WORK_DIR}/ and train "
            "again"
        )
    staged.write_array("oof/folds", ctx.folds)
    staged.write_array("oof/pred_probs", probs)
    staged.write_array("oof/logits", logits)
    staged.write_array("oof/embeddings", emb)
    for v in variants:
        staged.write_array(f"oof/masked/{v}", masked[v])
    in_sample = np.full((n, config.folds, k), np.nan, np.float32)
    for f, o in enumerate(outs):
        in_sample[o.in_sample_rows, f] = o.in_sample_probs
    staged.write_array("train/in_sample_probs", in_sample)
    staged.write_json("train/history.json", {"mode": config.mode, "folds": histories})
    for f in range(config.folds):
        _link_or_copy(checkpoint_path(run, f), staged.path / "train" / f"fold_{f}.pt")
    consumed = ["oof/folds.npy", "oof/pred_probs.npy", "oof/logits.npy", "oof/embeddings.npy",
                *(f"oof/masked/{v}.npy" for v in variants), "train/history.json",
                "train/in_sample_probs.npy"]
    if curve is not None:
        staged.write_json(LEARNING_CURVE, curve)
        consumed.append(LEARNING_CURVE)

    labels, groups = ctx.labels, ctx.groups
    cv_rows = np.flatnonzero(ctx.folds != HOLDOUT_FOLD)
    oof_auc = auc_with_ci(labels[cv_rows], probs[cv_rows], groups=groups[cv_rows], seed=config.seed)
    oof_acc = accuracy_with_ci(labels[cv_rows], probs[cv_rows])
    masked_auc = {v: auc_score(labels[cv_rows], masked[v][cv_rows]) for v in variants}
    h_auc = h_acc = None
    if hold.size:
        h_auc = auc_with_ci(labels[hold], probs[hold], groups=groups[hold], seed=config.seed)
        h_acc = accuracy_with_ci(labels[hold], probs[hold])

    seconds = elapsed_before + (time.perf_counter() - t0)
    setup = fold_results[0].setup
    record = {
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "data_fingerprint": ctx.fingerprint,
        "mode": config.mode,
        "classes": ctx.classes,
        "n_rows": int(n),
        "n_cv_rows": int(cv_rows.size),
        "n_holdout_rows": int(hold.size),
        "seeds": {"seed": config.seed, "folds": [fold_seed(config.seed, f) for f in range(config.folds)]},
        "versions": _versions(),
        "setup": setup,
        "timings": {
            "seconds": seconds,
            "folds": [r.seconds for r in fold_results],
            "reused_folds": [r.fold for r in fold_results if r.reused],
        },
        "folds": [r.to_dict() for r in fold_results],
        "fold_auc": [finite_or_none(r.auc) for r in fold_results],
        "oof_auc": oof_auc.to_dict(),
        "oof_acc": oof_acc.to_dict(),
        "masked_oof_auc": {v: finite_or_none(a) for v, a in masked_auc.items()},
        "learning_curve": None if curve is None else {
            "fractions": curve["fractions"], "seconds": curve["seconds"],
            "file": LEARNING_CURVE},
        "holdout": None if h_auc is None or h_acc is None else {
            "split": config.holdout_split,
            "scored_by": f"mean of {config.folds} folds' probabilities "
            f"({_models_per_fold(fold_results)} model(s) per fold)",
            "auc": h_auc.to_dict(),
            "acc": h_acc.to_dict(),
        },
        "auc_definition": "binary ROC AUC" if k == 2 else "macro one-vs-rest ROC AUC",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "artifacts": artifact_digests(staged, consumed),
        **extra,
    }
    _, drop = stale_after("train")
    staged.update_run_json({"train": record}, drop=drop)
    text = _summary_text(run, config, ctx, fold_results, oof_auc, oof_acc, h_auc, h_acc,
                         masked_auc, seconds)
    if curve is not None:
        by_f = {f: [p["auc"] for p in curve["points"] if p["fraction"] == f and p["auc"] is not None]
                for f in curve["fractions"]}
        text += ("\n  learning   mean fold AUC by training fraction: "
                 + ", ".join(f"{f:g}: {np.mean(a):.3f}" for f, a in by_f.items() if a)
                 + f" ({LEARNING_CURVE}, {_fmt_seconds(curve['seconds'])})")
    return TrainSummary(
        oof_auc=oof_auc, oof_acc=oof_acc, folds=fold_results, holdout_auc=h_auc,
        holdout_acc=h_acc, masked_auc=masked_auc, seconds=seconds, setup=setup,
        record=record, text=text,
    )


def _models_per_fold(folds: list[FoldResult]) -> int:
    """Models kept per fold (the largest count, should folds differ)."""
    return max(r.models for r in folds)


def _per_fold(folds: list[FoldResult]) -> str:
    """`` x N models`` when the folds keep several models each (else empty)."""
    n = _models_per_fold(folds)
    return f" x {n} models" if n > 1 else ""


def _fmt_seconds(s: float) -> str:
    m, sec = divmod(round(s), 60)
    return f"{m}m{sec:02d}s" if m else f"{s:.1f}s"


def _summary_text(
    run: RunDir,
    config: TrainConfig,
    ctx: RunContext,
    folds: list[FoldResult],
    oof_auc: Estimate,
    oof_acc: Estimate,
    h_auc: Estimate | None,
    h_acc: Estimate | None,
    masked_auc: dict[str, float],
    seconds: float,
) -> str:
    k = len(ctx.classes)
    n_hold = int(np.sum(ctx.folds == HOLDOUT_FOLD))
    cache_size = int(run.read_array("images", mmap=True).shape[-1])
    size = f"{config.image_size} px (cache {cache_size} px)" if config.image_size else f"{cache_size} px"
    setup = folds[0].setup
    lines = [
        f"medaudit train: {run.path}",
        f"  model      {config.model} ({config.mode}), {config.folds} patient-grouped folds"
        f"{_per_fold(folds)}, "
        f"{len(ctx.labels) - n_hold} CV rows" + (f" + {n_hold} holdout" if n_hold else "")
        + f", {k} classes, input {size}",
        f"  device     {setup.get('device')}, precision {setup.get('precision')}"
        + (" + channels-last" if setup.get("channels_last") else ""),
        f"  OOF AUC    {oof_auc}  ({oof_auc.method}{', macro one-vs-rest' if k > 2 else ''})",
        f"  OOF ACC    {oof_acc}  (Wilson)",
        "  fold AUC   " + "  ".join(f"{r.auc:.3f}" for r in folds),
        "  in-sample  " + "  ".join(f"{r.in_sample_auc:.3f}" for r in folds)
        + "  (AUC on each fold's own training rows)",
    ]
    if config.mode == "finetune" and not config.select_epochs:
        lines.append(f"  epochs     {config.epochs} per fold, on all the fold's training rows "
                     "(short schedule: no selection on an inner split)")
    elif config.mode == "finetune":
        refit = all(r.refit for r in folds)
        lines.append(
            "  epochs     " + "  ".join(f"{r.best_epoch:>5d}" for r in folds)
            + f"  (chosen on the inner split, max {config.epochs}"
            + (", first model of each fold" if config.models_per_fold > 1 else "")
            + ("; then refitted on all training rows of the fold)" if refit else ")")
        )
    if h_auc is not None and h_acc is not None:
        lines.append(f"  holdout    split {config.holdout_split!r}, ensemble of {config.folds} folds"
                     f"{_per_fold(folds)}: AUC {h_auc}, ACC {h_acc}")
    if masked_auc:
        lines.append("  masked AUC " + ", ".join(f"{v} {a:.3f}" for v, a in masked_auc.items()))
    reused = [r.fold for r in folds if r.reused]
    lines.append(f"  time       {_fmt_seconds(seconds)}"
                 + (f" (reused finished fold(s) {reused})" if reused else ""))
    return "\n".join(lines)

