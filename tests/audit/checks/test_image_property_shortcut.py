"""image_property_shortcut: a marker that only stands in for a site is 'mediated by site'."""

from __future__ import annotations

import numpy as np
import pytest

from audit.checks.image_property_shortcut import (
    MSG_CONTENT,
    SPEC,
    ImagePropertyShortcutConfig,
    check_image_property_shortcut,
)
from tests.audit.checks.shortcut_sim import context, shortcut_data

FAST = ImagePropertyShortcutConfig(n_permutations=300, n_boot=200)


def _props(findings):  # type: ignore[no-untyped-def]
    return {p["property"]: p for p in findings[0].evidence["properties"]}


def test_marker_on_one_site_is_mediated_by_site() -> None:
    data = shortcut_data(planted=True)
    findings = check_image_property_shortcut(context(data), FAST)
    assert all(f.severity in ("info", "pass") for f in findings)
    mediated = [f for f in findings if "mediated by site" in f.message]
    assert len(mediated) == 1
    props = _props(findings)
    assert props["has_corner_mark"]["mediated_by"] == ["site", "scanner", "dicom_manufacturer"]
    assert abs(props["has_corner_mark"]["within_group_auc"] - 0.5) < 0.1
    assert "corner_mark_corner" not in props  # a code, not a measurement


def test_marker_only_shortcut_without_metadata_is_flagged() -> None:
    data = shortcut_data(planted=False, seed=5, site_column=False)
    rng = np.random.default_rng(0)
    y = data["y"]
    marker = np.where(rng.random(len(y)) < 0.9, y == 1, rng.random(len(y)) < 0.25)
    props = data["image_properties"].copy()
    props["corner_mark_score"] = np.where(marker, 0.06, 0.001)
    props["has_corner_mark"] = marker
    findings = check_image_property_shortcut(context(data, image_properties=props), FAST)
    flagged = [f for f in findings if f.severity in ("warning", "critical")]
    assert len(flagged) == 1
    p = _props(findings)["has_corner_mark"]
    assert p["flagged"] and p["mediated_by"] is None and p["auc"]["estimate"] > 0.85
    assert len(p["extreme_sample_ids"]) == 2 * FAST.n_extremes
    together = findings[0].evidence["all_properties"]
    majority = max(np.mean(y), 1 - np.mean(y))  # the majority class's rate, not its index
    assert together["majority_class_rate"]["estimate"] == pytest.approx(majority, abs=1e-4)


def test_clean_control_passes_and_table() -> None:
    data = shortcut_data(planted=False, seed=6)
    findings = check_image_property_shortcut(context(data), FAST)
    assert [f.severity for f in findings] == ["pass"]
    table = SPEC.table(context(data), FAST)  # type: ignore[misc]
    assert len(table) == len(data["manifest"]) and "has_corner_mark_oof_score" in table


def test_whole_image_statistic_says_it_may_be_the_disease() -> None:
    data = shortcut_data(planted=False, seed=5, site_column=False)
    y = data["y"]
    props = data["image_properties"].copy()
    rng = np.random.default_rng(1)
    props["mean_intensity"] = 0.45 + 0.05 * y + rng.normal(0, 0.03, len(y))  # e.g. a bright lesion
    findings = check_image_property_shortcut(context(data, image_properties=props), FAST)
    [flagged] = [f for f in findings if f.severity in ("warning", "critical")]
    assert flagged.title.startswith("Image property mean_intensity alone")
    assert MSG_CONTENT.format(prop="mean_intensity") in flagged.message
    # a marker statistic is not a summary of the image content: no such caveat
    marker = y == 1
    props = data["image_properties"].copy()
    props["corner_mark_score"] = np.where(marker, 0.06, 0.001)
    findings = check_image_property_shortcut(context(data, image_properties=props), FAST)
    [flagged] = [f for f in findings if f.severity in ("warning", "critical")]
    assert "corner_mark_score" in flagged.title and "disease itself" not in flagged.message


def test_a_weak_grey_level_difference_is_info_but_a_weak_marker_is_a_warning() -> None:
    """Below content_min_auc a whole-image statistic is info (it may be the lesion itself)."""
    data = shortcut_data(planted=False, seed=5, site_column=False)
    y = data["y"]
    rng = np.random.default_rng(2)
    props = data["image_properties"].copy()
    props["p50"] = 0.45 - 0.012 * y + rng.normal(0, 0.03, len(y))  # darker lesions, weakly
    findings = check_image_property_shortcut(context(data, image_properties=props), FAST)
    p = _props(findings)["p50"]
    assert p["flagged"] and FAST.min_auc <= p["auc"]["estimate"] < FAST.content_min_auc
    assert [f.severity for f in findings] == ["info"]
    assert findings[0].title.startswith("The images' grey levels differ between the classes (p50")
    # the same strength in a marker statistic is not a summary of the anatomy: warning
    props = data["image_properties"].copy()
    props["edge_mark_score"] = 0.02 + 0.012 * y + rng.normal(0, 0.03, len(y))
    findings = check_image_property_shortcut(context(data, image_properties=props), FAST)
    assert findings[0].severity == "warning" and "edge_mark_score" in findings[0].title
    with pytest.raises(ValueError, match="content_min_auc"):
        ImagePropertyShortcutConfig(content_min_auc=0.55)
