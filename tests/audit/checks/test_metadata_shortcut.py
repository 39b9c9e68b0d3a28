"""metadata_shortcut: the planted site confounder is found, random columns and clean data are not."""

from __future__ import annotations

import numpy as np
import pytest

from audit.checks.metadata_shortcut import (
    SPEC,
    TITLE_PASS,
    MetadataShortcutConfig,
    check_metadata_shortcut,
)
from audit.context import AuditContext
from tests.audit.checks.shortcut_sim import CLASSES, context, shortcut_data

FAST = MetadataShortcutConfig(n_permutations=300, n_boot=200)


def test_planted_site_is_one_group_with_numbers() -> None:
    data = shortcut_data(planted=True)
    [f] = check_metadata_shortcut(context(data), FAST)
    assert f.severity in ("warning", "critical")
    cols = {tuple(c["columns"]): c for c in f.evidence["columns"]}
    site = cols[("site", "scanner", "dicom_manufacturer")]  # one partition, reported once
    assert site["flagged"] and site["q_value"] < 0.05
    assert site["auc"]["estimate"] > 0.6 and site["auc"]["ci_low"] is not None
    assert {"level", "n", "prevalence"} <= set(site["levels"][0])
    prev = {lv["level"]: lv["prevalence"]["estimate"] for lv in site["levels"]}
    assert prev["site-b"] > 2 * prev["site-a"]
    # random columns are tested but never flagged; constants and identifiers never tested
    for name in ("sex", "age_band", "view"):
        assert not cols[(name,)]["flagged"]
    tested = {c for group in cols for c in group}
    assert not tested & {"sample_id", "patient_key", "label", "label_name", "dicom_bits_stored"}
    assert "site-b" in f.message and "site-a" in f.message and "AUC" in f.message
    assert set(f.sample_ids) <= set(data["manifest"]["sample_id"])


def test_clean_control_passes() -> None:
    data = shortcut_data(planted=False, seed=3)
    [f] = check_metadata_shortcut(context(data), FAST)
    assert f.severity == "pass" and f.title.startswith(TITLE_PASS.split("(")[0])
    assert not any(c["flagged"] for c in f.evidence["columns"])


def test_multiclass_and_table() -> None:
    data = shortcut_data(planted=True, seed=1, n=2400)
    man = data["manifest"].copy()
    rng = np.random.default_rng(0)
    man["label"] = np.where(data["y"] == 1, 1 + (rng.random(len(man)) < 0.5), 0)
    man["label_name"] = [["a", "b", "c"][v] for v in man["label"]]
    ctx = AuditContext.from_arrays(man, ["a", "b", "c"])
    [f] = check_metadata_shortcut(ctx, MetadataShortcutConfig(n_permutations=200, n_boot=100))
    site = next(c for c in f.evidence["columns"] if c["columns"][0] == "site")
    assert site["q_value"] < 0.05 and site["auc"]["estimate"] > 0.55  # macro one-vs-rest AUC
    assert site["p_value"] == min(c["p_value"] for c in f.evidence["columns"])
    table = SPEC.table(context(data), FAST)  # type: ignore[misc]
    assert len(table) == len(man) and "site_oof_score" in table


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="min_auc"):
        MetadataShortcutConfig(min_auc=0.9, critical_auc=0.8)
    assert CLASSES == ["normal", "nodule"]
