"""The model-quality rule: model-based findings know how good the model behind them is.

Planted: 5 % label flips. A weak and a good logistic regression are trained
(out-of-fold, scikit-learn) on features that carry little or much signal about the
true label; the weak model's label-noise finding must read as an upper bound and be
capped at ``warning``, the good one's must not be capped.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from audit.context import AuditContext
from audit.engine import MSG_WEAK_MODEL, apply_model_quality, audit_context, validate_audit_config
from audit.findings import Finding
from audit.model_quality import ModelQualityConfig, assess_model_quality

# A low critical threshold, so that the good model's finding is critical and the cap shows.
CFG = {"label_issues": {"n_boot": 200, "critical_noise_rate": 0.03, "warn_noise_rate": 0.01}}


def _trained(signal: float, *, n: int = 1500, flip_rate: float = 0.05, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.4).astype(np.int64)
    flipped = rng.random(n) < flip_rate
    given = np.where(flipped, 1 - truth, truth)
    x = rng.normal(0, 1, (n, 5))
    x[:, 0] += signal * truth
    probs = cross_val_predict(LogisticRegression(), x, given, cv=5, method="predict_proba")
    return given, probs, flipped


def _audit(manifest_for, given, probs, **cfg):  # type: ignore[no-untyped-def]
    ctx = AuditContext.from_arrays(
        manifest_for(given, ["neg", "pos"]), ["neg", "pos"], pred_probs=probs
    )
    return audit_context(ctx, checks=["label_issues"], config={**CFG, **cfg})


def test_weak_model_finding_is_an_upper_bound_capped_at_warning(manifest_for) -> None:  # type: ignore[no-untyped-def]
    given, probs, _ = _trained(signal=0.8)
    res = _audit(manifest_for, given, probs)
    f = res.findings[0]
    mq = f.evidence["model_quality"]
    assert mq["verdict"] == "weak"
    assert mq["oof_auc"]["ci_low"] < 0.8
    assert f.severity == "warning" and mq["severity_before_cap"] == "critical"
    assert "upper bound" in f.title and "the model is weak" in f.title
    assert "upper bound on the share of wrong labels" in f.message
    assert "out-of-fold AUC is" in f.message  # the reason, with its numbers
    assert f.evidence["noise_rate_is"] == "upper bound (weak model)"
    assert res.model_quality is not None and res.model_quality["verdict"] == "weak"


def test_good_model_finding_is_not_capped(manifest_for) -> None:  # type: ignore[no-untyped-def]
    given, probs, flipped = _trained(signal=5.0)
    res = _audit(manifest_for, given, probs)
    f = res.findings[0]
    mq = f.evidence["model_quality"]
    assert mq["verdict"] == "adequate" and mq["oof_auc"]["ci_low"] >= 0.8
    assert f.severity == "critical" and "severity_before_cap" not in mq
    assert "upper bound" not in f.title and "Estimated label noise" in f.title
    # the estimate is near the planted 5 %
    assert abs(f.evidence["noise_rate"]["estimate"] - flipped.mean()) < 0.03


def test_rule_is_configurable(manifest_for) -> None:  # type: ignore[no-untyped-def]
    given, probs, _ = _trained(signal=0.8)
    off = _audit(manifest_for, given, probs, model_quality={"enabled": False})
    assert off.findings[0].severity == "critical"
    assert off.findings[0].evidence["model_quality"]["verdict"] == "not assessed"
    lax = _audit(manifest_for, given, probs, model_quality={"min_auc": 0.5})
    assert lax.findings[0].evidence["model_quality"]["verdict"] == "adequate"
    with pytest.raises(ValueError, match=r"section 'model_quality' has no setting\(s\) \['min'\]"):
        validate_audit_config({"model_quality": {"min": 0.7}})
    with pytest.raises(ValueError, match="min_auc must be in"):
        ModelQualityConfig(min_auc=0.3)


def test_basis_ci_low_treats_an_uncertain_auc_as_weak() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(15), np.ones(15)].astype(int)
    p1 = np.clip(0.5 + 0.25 * (2 * y - 1) + rng.normal(0, 0.25, 30), 0.01, 0.99)
    probs = np.c_[1 - p1, p1]
    low = assess_model_quality(y, probs)
    point = assess_model_quality(y, probs, config=ModelQualityConfig(basis="estimate"))
    assert low.auc.estimate > 0.8 > low.auc.low
    assert low.verdict == "weak" and point.verdict == "adequate"
    assert assess_model_quality(y, None).verdict == "not assessed"


def test_generic_wording_and_pass_findings() -> None:
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    probs = np.full((100, 2), 0.5)
    weak = assess_model_quality(y, probs)
    crit = Finding(
        check="x", severity="critical", title="t", message="m.", evidence={"method": "none"}
    )
    ok = Finding(check="x", severity="pass", title="t", message="m.", evidence={"method": "none"})
    a, b = apply_model_quality([crit, ok], weak)
    assert a.severity == "warning"
    assert a.message == "m." + MSG_WEAK_MODEL.format(reason=weak.reason)
    assert b.severity == "pass" and b.message == "m."
    assert b.evidence["model_quality"]["verdict"] == "weak"


def test_an_unlabeled_batch_is_judged_on_its_reference_run() -> None:
    """No labels in a predict batch: the verdict comes from the reference's OOF AUC, said so."""
    from types import SimpleNamespace

    import pandas as pd

    from audit.context import ReferenceRun
    from audit.model_quality import REASON_UNLABELED, model_quality_of_context

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p1 = np.clip(0.5 + 0.35 * (2 * y - 1) + rng.normal(0, 0.15, 400), 0.01, 0.99)
    ref = ReferenceRun(
        manifest=pd.DataFrame({"label": y, "patient_key": [f"p{i}" for i in range(400)]}),
        class_names=["a", "b"],
        pred_probs=np.c_[1 - p1, p1],
        name="train-run",
    )
    batch = SimpleNamespace(
        has_labels=False, has=lambda name: name == "reference", get=lambda name: ref
    )
    quality = model_quality_of_context(batch)
    expected = assess_model_quality(y, np.c_[1 - p1, p1])
    assert quality.verdict == "adequate" == expected.verdict
    assert quality.auc.estimate == pytest.approx(expected.auc.estimate)
    assert "no labels" in quality.reason and "'train-run'" in quality.reason
    alone = SimpleNamespace(has_labels=False, has=lambda name: False, get=None)
    lonely = model_quality_of_context(alone)
    assert lonely.verdict == "not assessed" and lonely.reason == REASON_UNLABELED
