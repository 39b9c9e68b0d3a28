"""label_issues: planted asymmetric flips are found; clean data is not warned about."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit.checks.label_issues import (
    TITLE_NOT_ESTIMABLE,
    LabelIssuesConfig,
    _confident_cells,
    _joint_from_totals,
    check_label_issues,
    estimate_noise,
    label_issue_table,
)
from audit.context import AuditContext
from audit.registry import build_config, get_check

FAST = LabelIssuesConfig(n_boot=200)


def _ctx(manifest_for, sim, classes, **kw):  # type: ignore[no-untyped-def]
    m = manifest_for(sim["given"], classes, **kw)
    return AuditContext.from_arrays(m, classes, pred_probs=sim["pred_probs"])


def _precision_recall(flagged: np.ndarray, flipped: np.ndarray) -> tuple[float, float]:
    tp = (flagged & flipped).sum()
    return tp / max(flagged.sum(), 1), tp / flipped.sum()


@pytest.mark.parametrize("k", [2, 3])
def test_planted_flips_found_with_precision_and_recall(simulate, k) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=1200, k=k, sep=2.5, seed=k)
    table = label_issue_table(s["given"], s["pred_probs"])
    prec, rec = _precision_recall(table["is_label_issue"].to_numpy(), s["flipped"])
    assert prec >= 0.7, prec
    assert rec >= 0.6, rec
    # the score ranks flips first: AUROC of (1 - score) well above chance
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(s["flipped"], -table["label_quality_score"]) > 0.9


def test_planted_noise_gives_warning_with_interval(simulate, manifest_for) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=1000, sep=2.5, flip_rate=0.10, seed=1)
    ctx = _ctx(manifest_for, s, ["benign", "malignant"], images_per_patient=2)
    findings = check_label_issues(ctx, FAST)
    main = findings[0]
    assert main.severity in ("warning", "critical")
    rate = main.evidence["noise_rate"]
    true_rate = s["flipped"].mean()
    assert rate["ci_low"] <= rate["estimate"] <= rate["ci_high"]
    assert rate["ci_low"] - 0.03 <= true_rate <= rate["ci_high"] + 0.03
    assert "patients" in rate["method"]
    flipped_ids = set(ctx.sample_ids[s["flipped"]])
    listed = main.sample_ids
    assert len(set(listed) & flipped_ids) / len(listed) >= 0.7
    top = main.evidence["top_issues"][0]
    assert top["suggested_label"] != top["given_label"]
    assert "filter_by='prune_by_noise_rate'" in main.evidence["method"]
    pairs = {(p["given"], p["suggested"]): p for p in main.evidence["noise_matrix"]}
    assert set(pairs) == {("benign", "malignant"), ("malignant", "benign")}
    json.dumps(main.to_dict(), allow_nan=False)


def test_clean_control_passes(simulate, manifest_for) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=800, sep=5.0, flip_rate=0.0, seed=2)
    findings = check_label_issues(_ctx(manifest_for, s, ["a", "b"]), FAST)
    assert all(f.severity in ("pass", "info") for f in findings)
    assert findings[0].evidence["noise_rate"]["estimate"] < 0.05


def test_thresholds_are_configurable(simulate, manifest_for) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=800, sep=2.5, flip_rate=0.10, seed=3)
    ctx = _ctx(manifest_for, s, ["a", "b"])
    lax = LabelIssuesConfig(n_boot=100, warn_noise_rate=0.5, critical_noise_rate=0.6)
    assert check_label_issues(ctx, lax)[0].severity == "pass"
    strict = LabelIssuesConfig(n_boot=100, warn_noise_rate=0.01, critical_noise_rate=0.02)
    assert check_label_issues(ctx, strict)[0].severity == "critical"
    by_low = LabelIssuesConfig(n_boot=100, severity_basis="ci_low", warn_noise_rate=0.01,
                               critical_noise_rate=0.02)
    assert check_label_issues(ctx, by_low)[0].severity == "critical"
    with pytest.raises(ValueError, match="warn_noise_rate <= critical_noise_rate"):
        LabelIssuesConfig(warn_noise_rate=0.2, critical_noise_rate=0.1)
    with pytest.raises(ValueError, match="must be one of"):
        build_config(get_check("label_issues"), {"filter_by": "magic"})


def test_bootstrap_matches_cleanlab_point_estimate(simulate) -> None:  # type: ignore[no-untyped-def]
    from cleanlab.count import compute_confident_joint, estimate_joint

    s = simulate(n=900, k=3, sep=2.0, seed=4)
    y, p = s["given"], s["pred_probs"].astype(float)
    cells = _confident_cells(y, p)
    totals = np.bincount(cells, minlength=3 * 4)
    cj = compute_confident_joint(y, p, calibrate=False)
    own = totals.reshape(3, 4)[:, :3].copy()
    np.fill_diagonal(own, np.maximum(np.diag(own), 1))
    assert (own == cj).all()  # same counting rule as cleanlab
    joint = _joint_from_totals(totals, 3)
    assert joint == pytest.approx(estimate_joint(y, p), abs=2 / len(y))  # cleanlab rounds
    res = estimate_noise(y, p, n_boot=300)
    assert res["noise_rate"].low <= res["noise_rate"].estimate <= res["noise_rate"].high
    assert res["pair_rates"].sum(1) == pytest.approx(np.ones(3))


def test_table_columns_and_ranking(simulate) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=300, seed=5)
    t = label_issue_table(s["given"], s["pred_probs"], filter_by="low_self_confidence",
                          rank_by="normalized_margin")
    assert list(t.columns) == ["given_label", "suggested_label", "suggested_label_prob",
                               "label_quality_score", "is_label_issue", "issue_rank"]
    first = t.sort_values("issue_rank").iloc[0]
    assert first["label_quality_score"] == t["label_quality_score"].min()
    assert (t["suggested_label"] == s["pred_probs"].argmax(1)).all()


def test_invalid_probabilities_are_refused(simulate, manifest_for) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=50, seed=6)
    bad = s["pred_probs"].copy()
    bad[7] = [0.9, 0.9]
    with pytest.raises(ValueError, match=r"row 7 .*sums to 1.8"):
        label_issue_table(s["given"], bad)
    m = manifest_for(s["given"], ["a", "b"])
    ctx = AuditContext.from_arrays(m, ["a", "b", "c"], pred_probs=s["pred_probs"])
    with pytest.raises(ValueError, match=r"shape \(N, K\) = \(50, 3\)"):
        check_label_issues(ctx, FAST)


def test_single_class_is_not_estimable(manifest_for) -> None:  # type: ignore[no-untyped-def]
    m = manifest_for(np.zeros(20, int), ["a", "b"])
    p = np.tile([0.8, 0.2], (20, 1))
    findings = check_label_issues(AuditContext.from_arrays(m, ["a", "b"], pred_probs=p), FAST)
    assert [f.title for f in findings] == [TITLE_NOT_ESTIMABLE]
    assert findings[0].severity == "info"


def test_patient_and_study_rollup(simulate, manifest_for) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=400, sep=3.0, flip_rate=0.1, seed=7)
    given = s["given"].copy()
    # patients of two images: make patient p0000 conflict on purpose
    given[0], given[1] = 0, 1
    study = [f"st{i // 4}" for i in range(400)]
    m = manifest_for(given, ["a", "b"], images_per_patient=2, study_key=study)
    ctx = AuditContext.from_arrays(m, ["a", "b"], pred_probs=s["pred_probs"])
    roll = [f for f in check_label_issues(ctx, FAST) if f.title.startswith("Label roll-up")]
    assert len(roll) == 1
    units = {r["unit"]: r for r in roll[0].evidence["rollups"]}
    assert set(units) == {"patient_key", "study_key"}
    assert units["patient_key"]["n_with_conflicting_labels"] >= 1
    assert "p0000" in {r["key"] for r in units["patient_key"]["listed"]}
    assert {"s00000", "s00001"} <= set(roll[0].sample_ids)


def test_no_rollup_when_every_patient_has_one_image(simulate, manifest_for) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=200, seed=8)
    findings = check_label_issues(_ctx(manifest_for, s, ["a", "b"]), FAST)
    assert len(findings) == 1


def test_folds_are_reported(simulate, manifest_for) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=200, seed=9)
    m = manifest_for(s["given"], ["a", "b"])
    folds = np.r_[np.zeros(150, np.int16), -np.ones(50, np.int16)]
    ctx = AuditContext.from_arrays(m, ["a", "b"], pred_probs=s["pred_probs"], folds=folds)
    ev = check_label_issues(ctx, FAST)[0].evidence
    assert (ev["n_oof_rows"], ev["n_heldout_ensemble_rows"]) == (150, 50)
