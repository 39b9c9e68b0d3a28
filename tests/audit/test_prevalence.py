"""Prior shift: Bayes adjustment is exact, EM and BBSE recover a planted prevalence."""

from __future__ import annotations

import numpy as np
import pytest

from audit.prevalence import (
    adjust_to_prevalence,
    bbse_prior,
    em_prior,
    estimate_prevalence,
    estimator_inputs,
)
from audit.recalibration import apply_calibrator, fit_calibrator
from tests.audit.fold_models_sim import N_FOLDS, fold_posterior, fold_scores, reference_and_batch

SHIFT = 1.8  # class separation of the synthetic score


def _sample(rng: np.random.Generator, n: int, prevalence: float) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < prevalence).astype(int)
    return y, rng.normal(0, 1, n) + SHIFT * y


def _posterior(score: np.ndarray, prior: float) -> np.ndarray:
    """Exact posterior of class 1 at ``prior`` (Gaussian classes, unit variance)."""
    z = SHIFT * score - SHIFT**2 / 2 + np.log(prior / (1 - prior))
    p = 1 / (1 + np.exp(-z))
    return np.column_stack([1 - p, p])


def test_adjustment_equals_the_posterior_at_the_new_prior() -> None:
    rng = np.random.default_rng(0)
    _, s = _sample(rng, 500, 0.3)
    moved = adjust_to_prevalence(_posterior(s, 0.3), 0.3, 0.05)
    assert np.allclose(moved, _posterior(s, 0.05))
    assert np.allclose(
        adjust_to_prevalence(_posterior(s, 0.3)[:, 1], [0.7, 0.3], [0.95, 0.05]),
        _posterior(s, 0.05)[:, 1],
    )
    w1, w0 = 0.05 / 0.25, 0.95 / 0.75  # 0.5 at 25 % prevalence -> 3/22 at 5 %
    assert adjust_to_prevalence(np.array([0.5]), 0.25, 0.05)[0] == pytest.approx(w1 / (w1 + w0))
    with pytest.raises(ValueError, match="target_prior must be a prevalence"):
        adjust_to_prevalence(np.array([0.5]), 0.25, 1.5)


@pytest.mark.parametrize("true_prev", [0.05, 0.5])
def test_both_estimators_recover_a_planted_shift(true_prev: float) -> None:
    rng = np.random.default_rng(3)
    ys, ss = _sample(rng, 3000, 0.3)
    yt, st = _sample(rng, 1500, true_prev)
    ps, pt = _posterior(ss, 0.3), _posterior(st, 0.3)
    observed = yt.mean()
    assert em_prior(pt, 0.3)[1] == pytest.approx(observed, abs=0.03)
    assert bbse_prior(ys, ps, pt)[1] == pytest.approx(observed, abs=0.04)
    for method in ("em", "bbse"):
        est = estimate_prevalence(
            pt, method=method, source_prior=ys.mean(), source_labels=ys, source_probs=ps, n_boot=100
        )[1]
        assert est.low <= observed <= est.high, (method, est)
        assert est.high - est.low < 0.15


def test_no_shift_is_estimated_as_no_shift() -> None:
    rng = np.random.default_rng(4)
    _sample(rng, 3000, 0.3)  # the reference draw, as in the other tests
    _, st = _sample(rng, 1500, 0.3)
    est = estimate_prevalence(_posterior(st, 0.3), method="em", source_prior=0.3, n_boot=100)[1]
    assert est.low <= 0.3 <= est.high


def test_estimators_use_the_reference_rows_scored_like_the_batch() -> None:
    from audit.prevalence import estimator_source_rows

    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    folds = np.where(np.arange(200) % 2 == 0, -1, np.arange(200) % 5)  # 100 held-out rows
    rows = estimator_source_rows(y, folds)
    assert (folds[rows] == -1).all() and len(rows) == 100
    few = np.where(np.arange(200) < 20, -1, 0)  # 20 held-out rows: too few
    assert len(estimator_source_rows(y, few)) == 200
    assert len(estimator_source_rows(np.r_[y[:150], np.full(50, -1)], None)) == 150


# -- per-fold estimation: fold models whose ensemble is less confident than each of them --


@pytest.mark.parametrize("true_prev", [0.1, 0.5])
def test_per_fold_stacking_recovers_a_shift_the_ensemble_comparison_misses(
    true_prev: float,
) -> None:
    d = reference_and_batch(np.random.default_rng(11), 6000, 3000, true_prev)
    ys, folds, ps, yt = d["y_ref"], d["folds"], d["probs_ref"], d["y_batch"]
    by_fold, ensemble = d["by_fold"], d["ensemble"]
    # the premise: the ensemble is less confident than each fold model
    assert np.abs(ensemble[:, 1] - 0.5).mean() < np.abs(by_fold[:, 0, 1] - 0.5).mean() - 0.01
    observed = yt.mean()
    gs, gt = (
        np.array([f"r{i}" for i in range(len(ys))]),
        np.array([f"b{i}" for i in range(len(yt))]),
    )
    errors = {}
    for kind, kw in (("per_fold", {"target_by_fold": by_fold}), ("oof_vs_ensemble", {})):
        inp = estimator_inputs(ys, ps, gs, folds, ensemble, gt, **kw)
        assert inp.source == kind and inp.biased == (kind == "oof_vs_ensemble")
        cal = fit_calibrator("temperature", inp.source_labels, inp.source_probs)
        em = em_prior(apply_calibrator(cal, inp.target_probs), 0.3)[1]
        bb = bbse_prior(
            inp.source_labels, inp.source_probs, inp.target_probs, source_folds=inp.source_folds
        )[1]
        errors[kind] = (abs(em - observed), abs(bb - observed))
    assert max(errors["per_fold"]) <= 0.03, errors
    assert errors["oof_vs_ensemble"][0] >= 0.05, errors  # EM on the ensemble: biased


def test_stacked_copies_are_resampled_by_patient() -> None:
    d = reference_and_batch(np.random.default_rng(12), 2000, 300, 0.1)
    gt = np.array([f"b{i}" for i in range(300)])
    inp = estimator_inputs(
        d["y_ref"],
        d["probs_ref"],
        d["y_ref"].astype(str),
        d["folds"],
        d["ensemble"],
        gt,
        target_by_fold=d["by_fold"],
    )
    assert inp.target_probs.shape == (N_FOLDS * 300, 2) and inp.n_target == 300
    assert (inp.target_groups[:300] == gt).all() and (inp.target_groups[300:600] == gt).all()
    by_patient = estimate_prevalence(
        inp.target_probs, method="em", source_prior=0.3, target_groups=inp.target_groups, n_boot=100
    )[1]
    by_copy = estimate_prevalence(inp.target_probs, method="em", source_prior=0.3, n_boot=100)[1]
    # copies of one image are dependent: treating them as independent rows narrows the interval
    assert (by_patient.high - by_patient.low) > 1.5 * (by_copy.high - by_copy.low)
    assert by_patient.low <= d["y_batch"].mean() <= by_patient.high


def test_bbse_weights_every_fold_model_equally() -> None:
    """Folds of unequal size with unequal models: the stacked batch weighs each fold model
    1/F, so the confusion matrix must too (pooled rows would follow the big fold)."""
    rng = np.random.default_rng(13)
    noise = np.array([0.2, 2.5, 2.5, 2.5, 2.5])  # fold 0: a good model; the others: weak
    ys, ss = fold_scores(rng, 20000, 0.3, noise)
    folds = np.where(rng.random(len(ys)) < 0.8, 0, rng.integers(1, N_FOLDS, len(ys)))
    every = np.stack([fold_posterior(ss[:, f], 0.3, noise[f]) for f in range(N_FOLDS)], 1)
    ps = every[np.arange(len(ys)), folds]
    yt, st = fold_scores(rng, 20000, 0.1, noise)
    stacked = np.concatenate([fold_posterior(st[:, f], 0.3, noise[f]) for f in range(N_FOLDS)])
    weighted = bbse_prior(ys, ps, stacked, source_folds=folds)[1]
    pooled = bbse_prior(ys, ps, stacked)[1]
    assert weighted == pytest.approx(yt.mean(), abs=0.02)
    assert abs(pooled - yt.mean()) > 0.04


def test_source_preference_per_fold_then_held_out_then_oof() -> None:
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    p = np.column_stack([1 - y * 0.6 - 0.2, y * 0.6 + 0.2])
    g = np.arange(200).astype(str)
    folds = np.where(np.arange(200) % 2 == 0, -1, np.arange(200) % 5)  # 100 held-out rows
    pt, gt, by = np.full((30, 2), 0.5), np.arange(30).astype(str), np.full((30, 5, 2), 0.5)
    per = estimator_inputs(y, p, g, folds, pt, gt, target_by_fold=by)
    assert per.source == "per_fold" and (per.source_folds >= 0).all()
    assert len(per.source_labels) == 100
    assert estimator_inputs(y, p, g, folds, pt, gt).source == "held_out"
    biased = estimator_inputs(y, p, g, np.abs(folds), pt, gt)
    assert biased.source == "oof_vs_ensemble" and biased.biased
    assert "BIASED" in biased.description
    assert estimator_inputs(y, p, g, None, pt, gt).source == "unrecorded"
    # a batch scored by fewer fold models than the reference has folds: not matched
    assert estimator_inputs(y, p, g, folds, pt, gt, target_by_fold=by[:, :3]).source == "held_out"
    with pytest.raises(ValueError, match="target_by_fold must have shape"):
        estimator_inputs(y, p, g, folds, pt, gt, target_by_fold=by[:5])
