"""Recalibration: recorded parameters reproduce netcal's transform; cross-fitting helps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from netcal.binning import HistogramBinning, IsotonicRegression
from netcal.scaling import BetaCalibration, LogisticCalibration, TemperatureScaling

from audit.calibration import ece
from audit.recalibration import CALIBRATORS, apply_calibrator, cross_fit, fit_calibrator

NETCAL = {
    "temperature": TemperatureScaling,
    "logistic": LogisticCalibration,
    "beta": BetaCalibration,
    "isotonic": IsotonicRegression,
    "histogram": lambda: HistogramBinning(bins=10),
}


def _overconfident(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    p = 1 / (1 + np.exp(-3 * z))
    return y, np.column_stack([1 - p, p])


@pytest.mark.parametrize("name", CALIBRATORS)
def test_recorded_parameters_reproduce_netcal(name: str) -> None:
    y, p = _overconfident()
    cal = json.loads(json.dumps(fit_calibrator(name, y, p)))  # survives JSON
    ours = apply_calibrator(cal, p)
    ref = NETCAL[name]()
    x = np.clip(p[:, 1], 1e-6, 1 - 1e-6)
    ref.fit(x, y)
    assert np.allclose(ours[:, 1], np.ravel(ref.transform(x)), atol=1e-6)
    assert np.allclose(ours.sum(1), 1.0)


def test_multiclass_temperature_matches_netcal() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600)
    z = rng.normal(0, 1, (600, 3))
    z[np.arange(600), y] += 1.5
    p = np.exp(3 * z)
    p /= p.sum(1, keepdims=True)
    cal = fit_calibrator("temperature", y, p)
    ref = TemperatureScaling()
    ref.fit(p, y)
    assert np.allclose(apply_calibrator(cal, p), ref.transform(p), atol=5e-3)
    with pytest.raises(ValueError, match="defined for two classes"):
        fit_calibrator("beta", y, p)


def test_cross_fitted_calibration_reduces_ece_of_overconfident_scores() -> None:
    y, p = _overconfident(2000)
    groups = np.arange(2000) // 2
    for name in ("temperature", "logistic", "isotonic"):
        cal, fitted = cross_fit(name, y, p, groups=groups, n_splits=5)
        assert len(fitted) == 5
        assert ece(y, cal) < 0.5 * ece(y, p), name


def test_unknown_calibrator_and_missing_parameters() -> None:
    p = np.array([[0.2, 0.8], [0.6, 0.4]])
    with pytest.raises(ValueError, match="calibrator must be one of"):
        apply_calibrator({"name": "magic", "params": {}}, p)
    with pytest.raises(ValueError, match="missing parameter"):
        apply_calibrator({"name": "temperature", "params": {}}, p)
