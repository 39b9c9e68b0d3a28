"""The shared operating point: threshold choice, intervals and predictive values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from audit.operating_point import (
    choose_operating_point,
    choose_operating_points,
    metrics_at_threshold,
    predictive_values,
)


def _scores(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.5 * y - 0.7)))
    return y, np.c_[1 - p1, p1]


def test_youden_matches_the_roc_curve_maximum() -> None:
    y, p = _scores()
    op = choose_operating_point(y, p)
    fpr, tpr, thr = roc_curve(y, p[:, 1])
    j = tpr - fpr
    assert op.sensitivity.estimate + op.specificity.estimate - 1 == pytest.approx(j.max())
    assert op.threshold in set(thr[np.flatnonzero(j == j.max())])
    assert op.sensitivity.low < op.sensitivity.estimate < op.sensitivity.high
    assert op.to_dict()["sensitivity"]["method"] == "Wilson score interval"


def test_target_sensitivity_and_specificity_are_met_at_the_best_threshold() -> None:
    y, p = _scores()
    op = choose_operating_point(y, p, method="sensitivity", target=0.9)
    assert op.sensitivity.estimate >= 0.9
    above = metrics_at_threshold(y, p, np.nextafter(op.threshold, 2))[0].estimate
    assert above < 0.9  # any higher threshold would miss the target
    op = choose_operating_point(y, p, method="specificity", target=0.95)
    assert op.specificity.estimate >= 0.95
    op = choose_operating_point(y, p, method="fixed", target=0.5)
    assert op.threshold == 0.5 and op.method == "fixed"


def test_multiclass_is_one_vs_rest_and_errors_are_named() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(0, 1, (300, 3)) + 2 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ops = choose_operating_points(y, p)
    assert sorted(ops) == [0, 1, 2] and all(o.sensitivity.estimate > 0.5 for o in ops.values())
    with pytest.raises(ValueError, match="needs a target"):
        choose_operating_point(y, p, method="sensitivity")
    with pytest.raises(ValueError, match="method must be one of"):
        choose_operating_point(y, p, method="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs rows of that class"):
        choose_operating_point(np.zeros(10, int), np.full((10, 2), 0.5))


def test_patient_clusters_widen_the_interval() -> None:
    y, p = _scores(200)
    y, p = np.repeat(y, 3), np.repeat(p, 3, axis=0)       # each patient imaged 3 times
    groups = np.repeat(np.arange(200), 3)
    naive, _ = metrics_at_threshold(y, p, 0.5)
    clustered, _ = metrics_at_threshold(y, p, 0.5, groups=groups)
    assert "clusters" in clustered.method
    assert clustered.high - clustered.low > 1.3 * (naive.high - naive.low)


def test_predictive_values_follow_bayes_at_the_stated_prevalence() -> None:
    ppv, npv = predictive_values(0.9, 0.8, 0.05)
    assert ppv == pytest.approx(0.045 / (0.045 + 0.19))
    assert npv == pytest.approx(0.76 / (0.76 + 0.005))
    ppv_hi, _ = predictive_values(0.9, 0.8, 0.25)
    assert ppv_hi > ppv  # PPV rises with prevalence
    with pytest.raises(ValueError, match=r"prevalence must be in \(0, 1\)"):
        predictive_values(0.9, 0.8, 0.0)
