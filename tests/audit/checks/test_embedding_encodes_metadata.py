"""embedding_encodes_metadata: label-predictive and encoded site = ONE shortcut finding."""

from __future__ import annotations

import dataclasses

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


def test_a_coarser_grouping_of_the_shortcut_site_is_folded_into_its_finding() -> None:
    """dicom_modality = CR only at site B (DX at A and C): one finding, not two."""
    import numpy as np

    data = shortcut_data(planted=True)
    data["manifest"]["dicom_modality"] = np.where(data["site"] == 1, "CR", "DX")
    # site B vs the rest predicts the label with AUC 0.59 here: a bar of 0.55 makes the
    # modality group a shortcut on its own numbers, as it was in a demo run
    config = dataclasses.replace(FAST, label_min_auc=0.55)
    findings = check_embedding_encodes_metadata(context(data), config)
    shortcut = [f for f in findings if f.evidence.get("shortcut")]
    assert len(shortcut) == 1
    nested = shortcut[0].evidence["nested_groups"]
    assert [g["columns"] for g in nested] == [["dicom_modality"]]
    assert (
        "dicom_modality" in shortcut[0].message and "not reported separately" in shortcut[0].message
    )
    # without the fold, the modality group is a shortcut on its own numbers
    summary = {tuple(g["columns"]): g for g in findings[-1].evidence["groups"]}
    assert summary[("dicom_modality",)]["shortcut"]


def test_coarsens() -> None:
    import numpy as np

    from audit._probes import coarsens

    site = np.array([0, 1, 2, 1, 0, 2])
    assert coarsens(site, np.array([0, 1, 0, 1, 0, 0]))  # merges levels 0 and 2
    assert coarsens(site, site)
    assert not coarsens(np.array([0, 1, 0, 1, 0, 0]), site)  # finer, not coarser
    assert not coarsens(site, np.array([0, 1, 2, 0, 0, 2]))  # splits level 1
