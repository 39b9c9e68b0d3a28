"""masking_test: a model that keeps its AUC with the anatomy hidden is critical.

The anatomy-hidden rule grades only radiograph-like images (``anatomy_layout``
resolved to ``centered``); the corner-drop rule applies in every layout.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from audit.checks.masking_test import (
    SPEC,
    TITLE_PASS,
    TITLE_PASS_CORNERS,
    MaskingTestConfig,
    check_masking_test,
    resolve_anatomy_layout,
)
from audit.engine import audit_context
from audit.registry import build_config
from tests.audit.checks.shortcut_sim import context, shortcut_data

FAST = MaskingTestConfig(n_boot=200)
CENTERED = dataclasses.replace(FAST, anatomy_layout="centered")


def _with_modality(data: dict, modality: object) -> dict:
    man = data["manifest"].copy()
    man["dicom_modality"] = modality
    return {**data, "manifest": man}


def test_planted_shortcut_survives_masking_centered() -> None:
    data = shortcut_data(planted=True)
    findings = check_masking_test(context(data), CENTERED)
    assert findings[0].severity in ("warning", "critical")
    assert "anatomy hidden" in findings[0].title
    variants = {v["variant"]: v for v in findings[0].evidence["variants"]}
    assert set(variants) == {"center_masked", "border_only", "corners_masked"}
    c = variants["center_masked"]
    assert c["auc"]["ci_low"] >= 0.55 and {"auc_original", "difference"} <= set(c)
    assert c["difference"]["ci_low"] is not None
    assert findings[0].evidence["anatomy_layout"]["layout"] == "centered"
    assert findings[0].evidence["method"]["layout"].startswith("centered (set: ")


@pytest.mark.parametrize(
    ("layout", "modality", "expected"),
    [("full_frame", None, "full_frame"), ("auto", None, "unknown"), ("auto", "US", "full_frame")],
)
def test_high_masked_auc_not_graded_outside_centered_layout(
    layout: str, modality: str | None, expected: str
) -> None:
    data = shortcut_data(planted=True)
    if modality is not None:
        data = _with_modality(data, modality)
    findings = check_masking_test(context(data), dataclasses.replace(FAST, anatomy_layout=layout))
    assert [f.severity for f in findings] == ["info"]
    f = findings[0]
    assert "inconclusive" in f.title and expected in f.title
    assert 'anatomy_layout = "centered"' in f.message
    # the numbers stay in the evidence: the same high masked AUC as in the centred run
    c = {v["variant"]: v for v in f.evidence["variants"]}["center_masked"]
    assert c["auc"]["ci_low"] >= 0.55
    assert f.evidence["anatomy_layout"]["layout"] == expected
    assert f.evidence["method"]["layout"].startswith(f"{expected} (")


def test_clean_control_passes() -> None:
    data = shortcut_data(planted=False, seed=3)
    findings = check_masking_test(context(data), CENTERED)
    assert [f.severity for f in findings] == ["pass"]
    assert findings[0].title == TITLE_PASS.format(n=3)
    findings = check_masking_test(context(data), FAST)  # auto, no dicom_modality: unknown
    assert [f.severity for f in findings] == ["pass"]
    assert findings[0].title == TITLE_PASS_CORNERS.format(n=3)
    assert "not graded" in findings[0].message


@pytest.mark.parametrize("layout", ["centered", "full_frame", "auto"])
def test_corner_drop_warns_in_every_layout_and_heldout_rows_apart(layout: str) -> None:
    data = shortcut_data(planted=False, seed=7)
    masked = dict(data["masked"])
    rng = np.random.default_rng(0)
    masked["corners_masked"] = np.column_stack(
        [np.full(len(data["y"]), 0.5), np.full(len(data["y"]), 0.5)]
    )
    masked["corners_masked"][:, 1] += rng.normal(0, 0.01, len(data["y"]))
    folds = data["folds"].copy()
    folds[:100] = -1
    config = dataclasses.replace(FAST, anatomy_layout=layout)
    findings = check_masking_test(context(data, masked=masked, folds=folds), config)
    assert any(f.severity in ("warning", "critical") and "corners" in f.message for f in findings)
    ev = findings[0].evidence
    assert ev["variants"][0]["n"] == len(folds) - 100
    assert ev["held_out_variants"] and ev["held_out_variants"][0]["n"] == 100


@pytest.mark.parametrize(
    ("modality", "layout"),
    [
        ("CR", "centered"),
        (["CR", "DX"], "centered"),
        ("ct", "centered"),
        ("US", "full_frame"),
        ("MG", "full_frame"),
        ("OT", "full_frame"),
        (["CR", "US"], "unknown"),
        (["CR", None], "unknown"),
        (None, "unknown"),  # no column at all
    ],
)
def test_auto_layout_from_dicom_modality(modality: object, layout: str) -> None:
    man = pd.DataFrame({"sample_id": ["a", "b"]})
    if modality is not None:
        man["dicom_modality"] = modality
    got, how = resolve_anatomy_layout(man, "auto")
    assert got == layout
    assert how.startswith("auto: ")
    if modality is None:
        assert "no dicom_modality column" in how
    assert resolve_anatomy_layout(man, "centered") == (
        "centered",
        "set: anatomy_layout = 'centered'",
    )


def test_auto_layout_cr_grades_the_planted_shortcut() -> None:
    data = _with_modality(shortcut_data(planted=True), "CR")
    findings = check_masking_test(context(data), FAST)
    assert findings[0].severity in ("warning", "critical")
    assert "anatomy hidden" in findings[0].title
    assert (
        findings[0]
        .evidence["method"]["layout"]
        .startswith("centered (auto: dicom_modality CR on every row)")
    )


def test_bad_layout_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"MaskingTestConfig.anatomy_layout must be one of"):
        MaskingTestConfig(anatomy_layout="center")
    with pytest.raises(ValueError, match=r"'anatomy_layout' must be one of"):
        build_config(SPEC, {"anatomy_layout": "radiograph"})
    assert build_config(SPEC, {"anatomy_layout": "full_frame"}).anatomy_layout == "full_frame"


def test_skipped_without_masked_arrays() -> None:
    data = shortcut_data(planted=True)
    ctx = context(data, masked=None)
    assert SPEC.missing_evidence(ctx) == ["no masked"]
    result = audit_context(ctx, checks=["masking_test"])
    assert [s["check"] for s in result.skipped] == ["masking_test"]
