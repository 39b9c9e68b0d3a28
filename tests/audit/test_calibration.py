"""Calibration metrics: planted over-confidence found, calibrated scores pass, netcal agrees."""

from __future__ import annotations

import numpy as np
import pytest
from netcal.metrics import ECE, MCE

from audit import calibration as C


def _binary(n: int, *, sharpen: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true risk is sigmoid(z); ``sharpen`` > 1 makes them over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    p = 1 / (1 + np.exp(-sharpen * z))
    return y, np.column_stack([1 - p, p])


def _multiclass(n: int, k: int = 3, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1, (n, k))
    z[np.arange(n), y] += 1.5
    p = np.exp(3 * z)
    return y, p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("data", [_binary(1500, sharpen=2.5), _multiclass(1500)])
def test_ece_and_mce_match_netcal(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = data
    assert C.ece(y, p) == pytest.approx(ECE(10).measure(p, y), abs=1e-9)
    assert C.ece(y, p, strategy="mass") == pytest.approx(
        ECE(10, equal_intervals=False).measure(p, y), abs=1e-9)
    assert C.mce(y, p) == pytest.approx(MCE(10).measure(p, y), abs=1e-9)


def test_overconfident_scores_are_flagged_and_calibrated_ones_are_not() -> None:
    y, good = _binary(3000, sharpen=1.0)
    _, over = _binary(3000, sharpen=3.0)
    m_good = C.calibration_metrics(y, good, n_boot=50)
    m_over = C.calibration_metrics(y, over, n_boot=50)
    assert m_good["ece"].estimate < 0.03 < m_over["ece"].estimate
    assert m_good["calibration_slope"].low < 1.0 < m_good["calibration_slope"].high
    # over-confident: slope clearly below 1 (about 1 / 3)
    assert m_over["calibration_slope"].high < 0.5
    assert m_over["sweep_ece"].estimate > 0.05 > m_good["sweep_ece"].estimate
    assert m_over["brier"].estimate > m_good["brier"].estimate
    for e in m_over.values():
        assert e.low <= e.estimate <= e.high


def test_reliability_bins_have_the_documented_shape() -> None:
    y, p = _binary(500, sharpen=1.0)
    bins = C.reliability_bins(y, p, n_bins=5, positive_class=1)
    assert [set(b) for b in bins] == [{"lo", "hi", "n", "mean_predicted", "observed_rate"}] * len(bins)
    assert sum(b["n"] for b in bins) == 500
    assert all(b["lo"] <= b["mean_predicted"] <= b["hi"] for b in bins)


def test_cluster_bootstrap_is_wider_with_repeated_patients() -> None:
    y, p = _binary(200, sharpen=2.0)
    y, p = np.repeat(y, 5), np.repeat(p, 5, axis=0)  # five identical images per patient
    groups = np.repeat(np.arange(200), 5)
    rows = C.calibration_metrics(y, p, n_boot=100, metrics=("brier",))["brier"]
    patients = C.calibration_metrics(y, p, groups=groups, n_boot=100, metrics=("brier",))["brier"]
    assert patients.high - patients.low > 1.5 * (rows.high - rows.low)
    assert "clusters" in patients.method


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="probs must have shape"):
        C.ece(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="unknown calibration metrics"):
        C.calibration_metrics(np.array([0, 1]), np.eye(2), metrics=("nope",))
