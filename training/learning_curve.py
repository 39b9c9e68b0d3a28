"""Learning curve: retrain each fold on patient-grouped fractions of its training rows.

For every fold ``k`` and fraction ``f < 1`` a patient-grouped, label-stratified
share ``f`` of the fold's training rows (inner split included) is drawn
(:func:`subsample_rows`); the fold's own procedure runs on it unchanged (inner
split for the epoch count or ``C``, refit, the same number of models), and the
model scores fold ``k``'s out-of-fold rows, which no fraction ever trains on. The
point of fraction 1 is the run's own fold (the same procedure on all the rows),
so it costs nothing. The result, ``train/learning_curve.json``::

    {"fractions": [...], "mode": ..., "seed": ..., "seconds": ...,
     "points": [{"fraction", "fold", "n_train", "auc", "auc_se", "auc_ci"}, ...]}

is fitted by the ``overfitting`` check (:mod:`audit.learning_curve`).

Cost: in fine-tuning mode about ``sum(fractions < 1)`` times the training time of
the run (0.25 + 0.5 + 0.75 = 1.5 x for the default fractions; smaller fractions
train on fewer images per epoch). In linear-probe mode the embeddings are computed
once and each point is a few logistic regressions: seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from audit.metrics import auc_with_ci
from audit.stats import finite_or_none
from training.config import TrainConfig
from training.fold_outputs import FoldResult
from training.reproducibility import fold_seed
from training.run_context import RunContext
from training.splits import FoldSplit, fold_split, inner_split

__all__ = ["learning_curve", "parse_fractions", "subsample_rows"]

_log = logging.getLogger(__name__)

MSG_FRACTIONS = (
    "learning-curve fractions must be numbers in (0, 1], comma-separated, e.g. "
    "0.25,0.5,0.75,1.0; got {got!r}"
)


def parse_fractions(fractions: str | Sequence[float]) -> tuple[float, ...]:
    """Check and sort learning-curve fractions (1.0 is always included).

    Parameters
    ----------
    fractions : str or sequence of float
        ``"0.25,0.5,0.75,1.0"`` or numbers in ``(0, 1]``.

    Returns
    -------
    tuple of float
        Sorted, unique, ending with 1.0.

    Raises
    ------
    ValueError
        For a value outside ``(0, 1]`` or text that is not a number list
        (:data:`MSG_FRACTIONS`), or fewer than two fractions.
    """
    try:
        values = (
            [float(v) for v in fractions.split(",") if v.strip()]
            if isinstance(fractions, str)
            else [float(v) for v in fractions]
        )
    except (TypeError, ValueError):
        raise ValueError(MSG_FRACTIONS.format(got=fractions)) from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise ValueError(MSG_FRACTIONS.format(got=fractions))
    out = tuple(sorted(set(values) | {1.0}))
    if len(out) < 2:
        raise ValueError(MSG_FRACTIONS.format(got=fractions) + "; give at least one below 1")
    return out


def subsample_rows(
    rows: np.ndarray, labels: np.ndarray, groups: np.ndarray, fraction: float, *, seed: int
) -> np.ndarray:
    """A patient-grouped, label-stratified share ``fraction`` of ``rows``.

    Realised as one part of a :class:`~sklearn.model_selection.StratifiedGroupKFold`
    split (:func:`training.splits.inner_split`): the held-out part for
    ``fraction <= 0.5`` (``round(1 / fraction)`` parts), the rest for larger
    fractions (``round(1 / (1 - fraction))`` parts), so the realised share is
    ``1/2, 1/3, 1/4, 2/3, 3/4 ...``, the nearest such value; the point records
    the rows actually used.

    Parameters
    ----------
    rows : numpy.ndarray
        ``(M,)`` row indices.
    labels, groups : numpy.ndarray
        ``(N,)`` labels and patient keys of all rows.
    fraction : float
        In ``(0, 1]``.
    seed : int

    Returns
    -------
    numpy.ndarray
        Sorted int64 row indices (all of ``rows`` for ``fraction == 1``).
    """
    if fraction >= 1:
        return np.sort(rows)
    if fraction <= 0.5:
        _, part = inner_split(rows, labels, groups, fraction=fraction, seed=seed)
        return np.sort(part)
    rest, _ = inner_split(rows, labels, groups, fraction=1 - fraction, seed=seed)
    return np.sort(rest)


def _fraction_split(
    ctx: RunContext, config: TrainConfig, pool: np.ndarray, fold: int, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Training and inner-validation rows of one fold at one fraction of its training rows."""
    sub = subsample_rows(
        pool,
        ctx.labels,
        ctx.groups,
        fraction,
        seed=fold_seed(config.seed, fold) + round(fraction * 1000),
    )
    return inner_split(
        sub, ctx.labels, ctx.groups, fraction=config.inner_val_fraction, seed=config.seed
    )


def _point(
    fraction: float,
    fold: int,
    n_train: int,
    labels: np.ndarray,
    probs: np.ndarray,
    groups: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    est = auc_with_ci(labels, probs, groups=groups, seed=seed)
    se = (est.high - est.low) / (2 * 1.959963984540054) if np.isfinite(est.low) else None
    return {
        "fraction": fraction,
        "fold": fold,
        "n_train": int(n_train),
        "auc": finite_or_none(est.estimate, 5),
        "auc_se": finite_or_none(se, 5),
        "auc_ci": est.to_dict(),
    }


def _finetune_points(
    ctx: RunContext, config: TrainConfig, fold: int, split: FoldSplit, fractions: Sequence[float]
) -> list[dict[str, Any]]:
    from training.dataset import ImageCache
    from training.device import resolve_device_setup
    from training.fold_training import ensemble_predict, train_member
    from training.loop import FitContext
    from training.predict import softmax
    from training.reproducibility import deterministic

    setup = resolve_device_setup(device=config.device, precision=config.precision)
    cache = ImageCache(ctx.run)
    pool = np.sort(np.concatenate([split.train, split.inner_val]))
    points = []
    for f in fractions:
        train, inner = _fraction_split(ctx, config, pool, fold, f)
        norm = cache.channel_stats(train, seed=fold_seed(config.seed, fold))
        fc = FitContext(
            config=config,
            labels=ctx.labels,
            n_classes=len(ctx.classes),
            setup=setup,
            cache=cache,
            norm=norm,
        )
        part = FoldSplit(train=train, inner_val=inner, oof=split.oof, holdout=split.holdout[:0])
        with deterministic(setup):
            members = [
                train_member(fc, part, member=m, fold=fold) for m in range(config.models_per_fold)
            ]
            nets = [(net, lp) for m in members for net, lp in m.kept]
            probs = softmax(ensemble_predict(nets, fc, split.oof, fold=fold)[0])
        points.append(
            _point(
                f,
                fold,
                len(members[0].fit_rows),
                ctx.labels[split.oof],
                probs,
                ctx.groups[split.oof],
                config.seed,
            )
        )
        _log.info(
            "learning curve fold %d fraction %.2f: %d training rows, OOF AUC %s",
            fold,
            f,
            len(members[0].fit_rows),
            points[-1]["auc"],
        )
    return points


def learning_curve(
    ctx: RunContext,
    config: TrainConfig,
    fractions: Sequence[float],
    fold_results: Sequence[FoldResult],
) -> dict[str, Any]:
    """Out-of-fold AUC of every fold retrained on fractions of its training rows.

    Parameters
    ----------
    ctx : RunContext
        The run being trained.
    config : TrainConfig
        The run's config (the same procedure is applied to every fraction).
    fractions : sequence of float
        From :func:`parse_fractions`.
    fold_results : sequence of FoldResult
        The run's folds (the points of fraction 1).

    Returns
    -------
    dict
        The content of ``train/learning_curve.json`` (module docstring).
    """
    from training.reproducibility import torch_threads

    t0 = time.perf_counter()
    fractions = parse_fractions(fractions)
    with torch_threads(config.threads):
        points = _points(ctx, config, fractions, fold_results)
    return {
        "fractions": list(fractions),
        "mode": config.mode,
        "seed": config.seed,
        "points": points,
        "n_train_definition": "rows the fold's kept model was fitted on (training rows of the "
        "fraction, its inner split included after a refit)",
        "auc_definition": "out-of-fold ROC AUC of the fold's rows (macro one-vs-rest for K > 2)",
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _points(
    ctx: RunContext,
    config: TrainConfig,
    fractions: Sequence[float],
    fold_results: Sequence[FoldResult],
) -> list[dict[str, Any]]:
    from training.predict import softmax

    lower = [f for f in fractions if f < 1]
    points: list[dict[str, Any]] = []
    probe = None
    if config.mode == "linear-probe":
        from training.linear_probe import embed_run

        probe = embed_run(ctx, config)[0]
    for fold in range(config.folds):
        split = fold_split(
            ctx.folds,
            fold,
            ctx.labels,
            ctx.groups,
            inner_val_fraction=config.inner_val_fraction,
            seed=config.seed,
        )
        if probe is None:
            points += _finetune_points(ctx, config, fold, split, lower)
        else:
            from training.linear_probe import fit_probe

            pool = np.sort(np.concatenate([split.train, split.inner_val]))
            for f in lower:
                train, inner = _fraction_split(ctx, config, pool, fold, f)
                fitted, _, _, fit_rows = fit_probe(
                    probe,
                    ctx.labels,
                    train,
                    inner,
                    n_classes=len(ctx.classes),
                    balanced=config.class_weighting != "none",
                    seed=fold_seed(config.seed, fold),
                )
                probs = softmax(fitted.score(split.oof, probe))
                points.append(
                    _point(
                        f,
                        fold,
                        len(fit_rows),
                        ctx.labels[split.oof],
                        probs,
                        ctx.groups[split.oof],
                        config.seed,
                    )
                )
        full = fold_results[fold]
        oof = split.oof
        probs_full = _fold_oof_probs(ctx, fold, oof)
        points.append(
            _point(
                1.0, fold, full.n_train, ctx.labels[oof], probs_full, ctx.groups[oof], config.seed
            )
        )
    return points


def _fold_oof_probs(ctx: RunContext, fold: int, oof: np.ndarray) -> np.ndarray:
    """The run's own out-of-fold probabilities of ``fold`` (the fraction-1 point)."""
    from training.fold_outputs import load_fold_outputs

    out = load_fold_outputs(ctx.run, fold, ()).oof
    if not np.array_equal(out.rows, oof):
        raise ValueError(f"fold {fold}'s outputs disagree with its rows; train again")
    return out.probs
