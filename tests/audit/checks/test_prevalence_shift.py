"""Check ``prevalence_shift``: PPV at the deployment prevalence, estimated prevalence of a batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audit.checks.prevalence_shift import (
    MSG_LABEL_SHIFT,
    PrevalenceShiftConfig,
    check_prevalence_shift,
)
from audit.context import UNLABELED, AuditContext, ReferenceRun
from audit.operating_point import predictive_values
from tests.audit.fold_models_sim import batch_context, reference_and_batch

FAST = PrevalenceShiftConfig(n_boot=50, calibrator="temperature")
SHIFT = 1.8


def _data(n: int, prevalence: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < prevalence).astype(int)
    s = rng.normal(0, 1, n) + SHIFT * y
    return y, s


def _probs(s: np.ndarray, prior: float) -> np.ndarray:
    z = SHIFT * s - SHIFT**2 / 2 + np.log(prior / (1 - prior))
    p = 1 / (1 + np.exp(-z))
    return np.column_stack([1 - p, p]).astype(np.float32)


def _manifest(y: np.ndarray, prefix: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": [f"{prefix}{i}" for i in range(len(y))],
            "label": y,
            "patient_key": [f"{prefix}p{i}" for i in range(len(y))],
        }
    )


def test_stated_screening_prevalence_lowers_ppv_and_says_so() -> None:
    rng = np.random.default_rng(0)
    y, s = _data(1500, 0.25, rng)
    ctx = AuditContext.from_arrays(
        _manifest(y, "s"), ["benign", "malignant"], pred_probs=_probs(s, 0.25)
    )
    [f] = check_prevalence_shift(
        ctx, PrevalenceShiftConfig(n_boot=50, calibrator="temperature", deployment_prevalence=0.05)
    )
    train, dep = f.evidence["table"]
    assert train["prevalence"] == pytest.approx(y.mean(), abs=1e-3) and dep["prevalence"] == 0.05
    # Youden's cut does not depend on prevalence: same sensitivity, lower PPV
    assert dep["sensitivity"]["estimate"] == pytest.approx(
        train["sensitivity"]["estimate"], abs=0.02
    )
    assert dep["ppv"]["estimate"] < train["ppv"]["estimate"] - 0.2
    se, sp = dep["sensitivity"]["estimate"], dep["specificity"]["estimate"]
    assert dep["ppv"]["estimate"] == pytest.approx(predictive_values(se, sp, 0.05)[0], abs=1e-3)
    assert dep["ppv"]["ci_low"] <= dep["ppv"]["estimate"] <= dep["ppv"]["ci_high"]
    assert dep["false_alarms_per_1000"]["estimate"] == pytest.approx(1000 * (1 - sp) * 0.95, abs=1)
    assert f.severity == "warning" and "of every 10 positive calls would be false alarms" in f.title
    assert f.evidence["order"].startswith("calibrated")
    assert MSG_LABEL_SHIFT not in f.message and "assumption" not in f.evidence


def test_unlabeled_batch_prevalence_is_estimated_from_the_reference() -> None:
    rng = np.random.default_rng(1)
    yr, sr = _data(2000, 0.3, rng)
    yt, st = _data(1200, 0.08, rng)
    ref = ReferenceRun(_manifest(yr, "r"), ["benign", "malignant"], pred_probs=_probs(sr, 0.3))
    batch = _manifest(np.full(len(yt), UNLABELED), "t")
    ctx = AuditContext.from_arrays(
        batch, ["benign", "malignant"], pred_probs=_probs(st, 0.3), reference=ref
    )
    assert not ctx.has_labels
    [f] = check_prevalence_shift(ctx, FAST)
    est = f.evidence["estimated_prevalence"]  # BBSE by default
    assert est["ci_low"] <= yt.mean() <= est["ci_high"]
    assert abs(est["estimate"] - yt.mean()) < 0.05
    em = f.evidence["estimates"]["em"][1]
    assert abs(em["estimate"] - yt.mean()) < 0.03
    assert em["ci_low"] <= yt.mean() <= em["ci_high"]
    assert f.evidence["deployment_prevalence_source"] == "estimated (bbse)"
    # an estimate from a batch rests on label shift, and says so (a stated one does not)
    assert MSG_LABEL_SHIFT in f.message and f.evidence["assumption"].startswith("label shift")
    # a stated prevalence far from what the batch shows is questioned
    found = check_prevalence_shift(
        ctx, PrevalenceShiftConfig(n_boot=50, calibrator="temperature", deployment_prevalence=0.4)
    )
    assert any("disagrees" in g.title for g in found)


def test_nothing_stated_and_nothing_to_estimate_is_an_info() -> None:
    rng = np.random.default_rng(2)
    y, s = _data(300, 0.3, rng)
    ctx = AuditContext.from_arrays(_manifest(y, "s"), ["a", "b"], pred_probs=_probs(s, 0.3))
    [f] = check_prevalence_shift(ctx, FAST)
    assert f.severity == "info" and "--deployment-prevalence" in f.message
    unlabeled = AuditContext.from_arrays(
        _manifest(np.full(300, UNLABELED), "s"), ["a", "b"], pred_probs=_probs(s, 0.3)
    )
    [g] = check_prevalence_shift(unlabeled, FAST)
    assert g.severity == "info" and "no labels" in g.message


def test_batch_scored_by_each_fold_model_is_estimated_fold_by_fold() -> None:
    d = reference_and_batch(np.random.default_rng(5), 3000, 1500, 0.5)
    ref = ReferenceRun(
        _manifest(d["y_ref"], "r"),
        ["benign", "malignant"],
        pred_probs=d["probs_ref"].astype(np.float32),
        folds=d["folds"],
    )
    batch = _manifest(np.full(len(d["y_batch"]), UNLABELED), "t")
    truth = d["y_batch"].mean()
    per_fold = batch_context(batch, d, ref)
    [f] = check_prevalence_shift(per_fold, FAST)
    assert f.evidence["estimator_source"] == "per_fold" and f.evidence["n_deployment"] == 1500
    for method in ("em", "bbse"):
        est = f.evidence["estimates"][method][1]
        assert abs(est["estimate"] - truth) < 0.03, (method, est)
        assert est["ci_low"] <= truth <= est["ci_high"]
    assert "biased" not in f.message
    ensemble_only = batch_context(batch, d, ref, per_fold=False)
    [g] = check_prevalence_shift(ensemble_only, FAST)
    assert g.evidence["estimator_source"] == "oof_vs_ensemble"
    assert "BIASED" in g.evidence["estimator_source_detail"] and "biased" in g.message
    assert abs(g.evidence["estimates"]["em"][1]["estimate"] - truth) > 0.05


def test_a_model_that_never_calls_a_class_gives_no_bbse_estimate() -> None:
    rng = np.random.default_rng(7)
    yr, sr = _data(600, 0.3, rng)
    _, st = _data(300, 0.1, rng)

    def never_positive(s: np.ndarray) -> np.ndarray:  # ranks well, but p1 < 0.5 everywhere
        p = 0.05 + 0.4 / (1 + np.exp(-s))
        return np.column_stack([1 - p, p]).astype(np.float32)

    ref = ReferenceRun(_manifest(yr, "r"), ["benign", "malignant"], pred_probs=never_positive(sr))
    ctx = AuditContext.from_arrays(
        _manifest(np.full(300, UNLABELED), "t"),
        ["benign", "malignant"],
        pred_probs=never_positive(st),
        reference=ref,
    )
    [f] = check_prevalence_shift(ctx, FAST)
    assert f.severity == "info" and "BBSE gave no estimate" in f.message
