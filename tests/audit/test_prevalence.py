"""Prior shift: Bayes adjustment is exact, EM and BBSE recover a planted prevalence."""

from __future__ import annotations

import numpy as np
import pytest

from audit.prevalence import adjust_to_prevalence, bbse_prior, em_prior, estimate_prevalence

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
    assert np.allclose(adjust_to_prevalence(_posterior(s, 0.3)[:, 1], [0.7, 0.3], [0.95, 0.05]),
                       _posterior(s, 0.05)[:, 1])
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
        est = estimate_prevalence(pt, method=method, source_prior=ys.mean(), source_labels=ys,
                                  source_probs=ps, n_boot=100)[1]
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
