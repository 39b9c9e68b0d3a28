"""embedding_encodes_metadata: label-predictive and encoded site = ONE shortcut finding."""

from __future__ import annotations

from audit.checks.embedding_encodes_metadata import (
    SPEC,
    TITLE_SHORTCUT,
    EmbeddingEncodesMetadataConfig,
    check_embedding_encodes_metadata,
)
from tests.audit.checks.shortcut_sim import context, shortcut_data

FAST = EmbeddingEncodesMetadataConfig(
    n_permutations=300, n_boot=100, inner_splits=3, n_refit_permutations=0
)


def test_planted_shortcut_is_one_critical_finding_with_both_numbers() -> None:
    data = shortcut_data(planted=True)
    findings = check_embedding_encodes_metadata(context(data), FAST)
    shortcut = [f for f in findings if f.evidence.get("shortcut")]
    assert len(shortcut) == 1
    f = shortcut[0]
    assert f.severity == "critical"
    assert f.title == TITLE_SHORTCUT.format(col="site/scanner/dicom_manufacturer")
    assert f.evidence["label_auc"]["estimate"] > 0.6
    assert f.evidence["encoding_auc"]["estimate"] > 0.9
    assert "site-b" in f.message and "recognising the site" in f.message
    summary = findings[-1].evidence["groups"]
    assert all(not g["shortcut"] for g in summary if g["columns"] == ["view"])
    assert not any("sex" in g["columns"] for g in summary)  # clinical: not probed by default


def test_encoded_but_not_predictive_is_info_only() -> None:
    data = shortcut_data(planted=False, seed=2)
    emb = data["embeddings"].copy()
    emb[:, 1] += 3.0 * (data["site"] == 1)  # features know the site, the label does not
    findings = check_embedding_encodes_metadata(context(data, embeddings=emb), FAST)
    assert [f.severity for f in findings] == ["info"]
    groups = {tuple(g["columns"]): g for g in findings[0].evidence["groups"]}
    assert groups[("site", "scanner", "dicom_manufacturer")]["encoded"]
    assert not groups[("site", "scanner", "dicom_manufacturer")]["shortcut"]


def test_clean_control_passes_and_table() -> None:
    data = shortcut_data(planted=False, seed=4)
    findings = check_embedding_encodes_metadata(context(data), FAST)
    assert [f.severity for f in findings] == ["pass"]
    assert SPEC.model_based
    table = SPEC.table(context(data), FAST)  # type: ignore[misc]
    assert len(table) == len(data["manifest"]) and "site_probe_prob" in table
