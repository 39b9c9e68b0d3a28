"""masking_test: a model that keeps its AUC with the anatomy hidden is critical."""

from __future__ import annotations

import numpy as np

from audit.checks.masking_test import (
    SPEC,
    TITLE_PASS,
    MaskingTestConfig,
    check_masking_test,
)
from audit.engine import audit_context
from tests.audit.checks.shortcut_sim import context, shortcut_data

FAST = MaskingTestConfig(n_boot=200)


def test_planted_shortcut_survives_masking() -> None:
    data = shortcut_data(planted=True)
    findings = check_masking_test(context(data), FAST)
    assert findings[0].severity in ("warning", "critical")
    assert "anatomy hidden" in findings[0].title
    variants = {v["variant"]: v for v in findings[0].evidence["variants"]}
    assert set(variants) == {"center_masked", "border_only", "corners_masked"}
    c = variants["center_masked"]
    assert c["auc"]["ci_low"] >= 0.55 and {"auc_original", "difference"} <= set(c)
    assert c["difference"]["ci_low"] is not None


def test_clean_control_passes() -> None:
    data = shortcut_data(planted=False, seed=3)
    findings = check_masking_test(context(data), FAST)
    assert [f.severity for f in findings] == ["pass"]
    assert findings[0].title == TITLE_PASS.format(n=3)


def test_corner_drop_warns_and_heldout_rows_apart() -> None:
    data = shortcut_data(planted=False, seed=7)
    masked = dict(data["masked"])
    rng = np.random.default_rng(0)
    masked["corners_masked"] = np.column_stack(
        [np.full(len(data["y"]), 0.5), np.full(len(data["y"]), 0.5)]
    )
    masked["corners_masked"][:, 1] += rng.normal(0, 0.01, len(data["y"]))
    folds = data["folds"].copy()
    folds[:100] = -1
    findings = check_masking_test(context(data, masked=masked, folds=folds), FAST)
    assert any(f.severity in ("warning", "critical") and "corners" in f.message for f in findings)
    ev = findings[0].evidence
    assert ev["variants"][0]["n"] == len(folds) - 100
    assert ev["held_out_variants"] and ev["held_out_variants"][0]["n"] == 100


def test_skipped_without_masked_arrays() -> None:
    data = shortcut_data(planted=True)
    ctx = context(data, masked=None)
    assert SPEC.missing_evidence(ctx) == ["no masked"]
    result = audit_context(ctx, checks=["masking_test"])
    assert [s["check"] for s in result.skipped] == ["masking_test"]
