"""Check ``calibration``: over-confident scores flagged and recalibrated, calibrated ones pass."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.checks.calibration import CalibrationConfig, check_calibration
from audit.context import AuditContext
from audit.recalibration import apply_calibrator

FAST = CalibrationConfig(n_boot=30, calibrators=("temperature", "logistic", "isotonic"))


def _ctx(n: int, sharpen: float, *, seed: int = 0) -> AuditContext:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    p = 1 / (1 + np.exp(-sharpen * z))
    manifest = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "label": y,
                             "patient_key": [f"p{i // 2}" for i in range(n)],
                             "site": np.where(np.arange(n) % 3 == 0, "a", "b")})
    return AuditContext.from_arrays(manifest, ["benign", "malignant"],
                                    pred_probs=np.column_stack([1 - p, p]).astype(np.float32))


def test_overconfident_model_is_flagged_and_the_calibrator_fixes_it() -> None:
    ctx = _ctx(1200, sharpen=3.0)
    [f] = check_calibration(ctx, FAST)
    assert f.severity in ("warning", "critical")
    assert "over-confident" in f.message
    ev = json.loads(json.dumps(f.evidence))  # JSON-ready
    assert ev["calibrator"]["name"] in FAST.calibrators
    after = ev["recalibration"][ev["calibrator"]["name"]]["ece"]["estimate"]
    assert after < 0.5 * ev["metrics"]["ece"]["estimate"]
    assert ev["reliability"] and set(ev["reliability"][0]) == {"lo", "hi", "n", "mean_predicted",
                                                                "observed_rate"}
    assert set(ev["reliability_per_site"]) == {"a", "b"}
    # the recorded calibrator is usable as is (reports and the dashboard call this)
    q = apply_calibrator(ev["calibrator"], np.asarray(ctx.get("pred_probs")))
    assert q.shape == (1200, 2)


def test_calibrated_model_passes() -> None:
    [f] = check_calibration(_ctx(1200, sharpen=1.0, seed=1), FAST)
    assert f.severity == "pass", f.title
    assert not f.evidence["ci_too_wide"]


def test_small_n_says_the_interval_is_wide() -> None:
    [f] = check_calibration(_ctx(80, sharpen=1.0, seed=2), FAST)
    assert f.evidence["ci_too_wide"] and "intervals are wide" in f.message
    assert f.severity != "critical"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="calibrators must be among"):
        CalibrationConfig(calibrators=("magic",))
