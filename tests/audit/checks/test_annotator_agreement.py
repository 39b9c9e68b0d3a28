"""annotator_agreement: weak agreement is warned about; good readers pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from audit.checks.annotator_agreement import (
    TITLE_NOT_ESTIMABLE,
    AnnotatorAgreementConfig,
    annotator_matrix,
    check_annotator_agreement,
    consensus_labels,
)
from audit.context import AuditContext
from audit.engine import audit_context

CLASSES = ["benign", "malignant", "normal"]
FAST = AnnotatorAgreementConfig(n_boot=200)


def _readers(truth: np.ndarray, accuracies: list[float], *, seed: int, missing: float = 0.2):
    rng = np.random.default_rng(seed)
    n = len(truth)
    out = {}
    for j, acc in enumerate(accuracies):
        r = np.where(rng.random(n) < acc, truth, rng.integers(0, 3, n)).astype(float)
        r[rng.random(n) < missing] = np.nan
        out[f"label_r{j}"] = r
    return out


def _ctx(manifest_for, truth, readers, *, pred_probs=None):  # type: ignore[no-untyped-def]
    m = manifest_for(truth, CLASSES, **readers)
    ev = {} if pred_probs is None else {"pred_probs": pred_probs}
    return AuditContext.from_arrays(m, CLASSES, **ev)


def test_weak_agreement_is_warned(manifest_for) -> None:  # type: ignore[no-untyped-def]
    truth = np.random.default_rng(0).integers(0, 3, 300)
    ctx = _ctx(manifest_for, truth, _readers(truth, [0.6, 0.55, 0.65], seed=1))
    findings = check_annotator_agreement(ctx, FAST)
    main = findings[0]
    assert main.severity in ("warning", "critical")
    kappa = main.evidence["fleiss_kappa"]
    assert kappa["estimate"] < 0.6
    assert kappa["ci_low"] < kappa["estimate"] < kappa["ci_high"]
    pairs = main.evidence["pairwise_cohen_kappa"]
    assert len(pairs) == 3
    r0, r1 = ctx.manifest["label_r0"].to_numpy(), ctx.manifest["label_r1"].to_numpy()
    both = ~np.isnan(r0) & ~np.isnan(r1)
    ref = cohen_kappa_score(r0[both].astype(int), r1[both].astype(int))
    assert pairs[0]["annotator_b"] == "r1" and pairs[0]["kappa"] == pytest.approx(ref, abs=1e-4)
    assert main.sample_ids  # images with differing reads, to adjudicate
    assert "majority vote" in main.evidence["consensus_method"]
    json.dumps([f.to_dict() for f in findings], allow_nan=False)


def test_clean_control_passes(manifest_for) -> None:  # type: ignore[no-untyped-def]
    truth = np.random.default_rng(2).integers(0, 3, 300)
    ctx = _ctx(manifest_for, truth, _readers(truth, [0.97, 0.96, 0.98], seed=3))
    findings = check_annotator_agreement(ctx, FAST)
    assert findings[0].severity == "pass"
    assert all(f.severity in ("pass", "info") for f in findings)
    assert findings[0].evidence["fleiss_band_mchugh"] in ("strong", "almost perfect")


def test_crowdlab_used_with_pred_probs(manifest_for, simulate) -> None:  # type: ignore[no-untyped-def]
    s = simulate(n=300, k=3, sep=3.0, flip_rate=0.0, seed=4)
    truth = s["truth"]
    readers = _readers(truth, [0.9, 0.6, 0.92], seed=5)
    ctx = _ctx(manifest_for, truth, readers, pred_probs=s["pred_probs"])
    main = check_annotator_agreement(ctx, FAST)[0]
    assert "CROWDLAB" in main.evidence["consensus_method"]
    quality = {a["annotator"]: a["annotator_quality"] for a in main.evidence["annotators"]}
    assert quality["r1"] < quality["r0"] and quality["r1"] < quality["r2"]
    no_model = check_annotator_agreement(ctx, AnnotatorAgreementConfig(n_boot=50,
                                                                       use_pred_probs=False))
    assert "majority vote" in no_model[0].evidence["consensus_method"]


def test_one_weak_reader_among_good_ones(manifest_for) -> None:  # type: ignore[no-untyped-def]
    truth = np.random.default_rng(6).integers(0, 3, 400)
    readers = _readers(truth, [0.97, 0.97, 0.97, 0.97, 0.4], seed=7)
    findings = check_annotator_agreement(_ctx(manifest_for, truth, readers), FAST)
    assert findings[0].severity == "pass"
    weak = [f for f in findings if "agree weakly" in f.title]
    assert len(weak) == 1
    assert [a["annotator"] for a in weak[0].evidence["annotators"]] == ["r4"]


def test_training_label_differs_from_consensus(manifest_for) -> None:  # type: ignore[no-untyped-def]
    truth = np.random.default_rng(8).integers(0, 3, 200)
    readers = _readers(truth, [0.99, 0.99, 0.99], seed=9, missing=0.0)
    given = truth.copy()
    given[:30] = (truth[:30] + 1) % 3  # training labels transcribed wrongly
    m = manifest_for(given, CLASSES, **readers)
    findings = check_annotator_agreement(AuditContext.from_arrays(m, CLASSES), FAST)
    differ = [f for f in findings if f.title.startswith("Training label differs")]
    assert len(differ) == 1 and differ[0].severity == "warning"
    assert set(m["sample_id"][:30]) <= set(differ[0].sample_ids)


def test_class_names_and_indices_are_both_accepted(manifest_for) -> None:  # type: ignore[no-untyped-def]
    m = manifest_for(np.array([0, 1, 2, 0]), CLASSES,
                     label_a=["benign", "malignant", None, "normal"],
                     label_b=[0, 1.0, np.nan, 2], label_c=["0", " 1", "", "2"])
    r = annotator_matrix(m, CLASSES, ["label_a", "label_b", "label_c"])
    expected = np.array([[0, 0, 0], [1, 1, 1], [np.nan] * 3, [2, 2, 2]])
    np.testing.assert_array_equal(r, expected)


def test_bad_annotation_value_names_column_row_and_choices(manifest_for) -> None:  # type: ignore[no-untyped-def]
    m = manifest_for(np.array([0, 1]), CLASSES, label_a=["benign", "maybe"])
    with pytest.raises(ValueError, match=r"'label_a' has 'maybe' at row 1 .*'benign'"):
        annotator_matrix(m, CLASSES, ["label_a"])
    m = manifest_for(np.array([0, 1]), CLASSES, label_a=[0, 3])
    with pytest.raises(ValueError, match=r"class index in \[0, 3\)"):
        annotator_matrix(m, CLASSES, ["label_a"])


def test_no_overlap_between_readers_is_not_estimable(manifest_for) -> None:  # type: ignore[no-untyped-def]
    n = 20
    a = np.where(np.arange(n) < 10, 0.0, np.nan)
    b = np.where(np.arange(n) >= 10, 1.0, np.nan)
    m = manifest_for(np.zeros(n, int), CLASSES, label_a=a, label_b=b)
    findings = check_annotator_agreement(AuditContext.from_arrays(m, CLASSES), FAST)
    assert findings[0].title == TITLE_NOT_ESTIMABLE
    assert findings[0].severity == "info"


def test_consensus_labels_majority_vote() -> None:
    r = np.array([[0, 0, 1], [1, 1, np.nan], [2, 2, 2]], dtype=float)
    items, annotators, method = consensus_labels(r, annotator_names=["x", "y", "z"])
    assert items["consensus_label"].tolist() == [0, 1, 2]
    assert annotators.loc["z", "agreement_with_consensus"] == pytest.approx(0.5)
    assert "majority" in method


def test_skipped_without_annotator_columns(manifest_for) -> None:  # type: ignore[no-untyped-def]
    # label_name starts with 'label_' but is not an annotator column
    m = manifest_for(np.array([0, 1, 2]), CLASSES)
    res = audit_context(AuditContext.from_arrays(m, CLASSES), checks=["annotator_agreement"])
    assert res.skipped == [{"check": "annotator_agreement",
                            "reason": "no manifest column starting with 'label_'"}]
