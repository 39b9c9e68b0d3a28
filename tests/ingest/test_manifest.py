"""Manifest validation: each error kind, lazily collected, with row, column, value and fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ingest.manifest import (
    MSG_NO_PATIENT,
    ManifestError,
    read_manifest_csv,
    resolve_classes,
    validate_label_table,
)


def _csv(tmp_path: Path, rows: list[dict[str, object]], name: str = "m.csv") -> Path:
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def _rows(n: int = 6) -> list[dict[str, object]]:
    return [{"path": f"img{i}.png", "label": ["benign", "malignant"][i % 2], "patient_id": f"P{i}"}
            for i in range(n)]


def test_every_bad_row_is_reported_with_row_column_value(tmp_path: Path) -> None:
    rows = _rows(8)
    rows[1]["label"] = "maybe"
    rows[3]["age"] = "abc"
    rows[4]["sex"] = "unknown"
    rows[6]["label"] = None
    table = read_manifest_csv(_csv(tmp_path, rows), classes=["benign", "malignant"])
    reasons = dict(zip(table.refused["source"], table.refused["reason"]))
    assert set(reasons) == {"img1.png", "img3.png", "img4.png", "img6.png"}
    assert "column 'label' must be a class name in ['benign', 'malignant']" in reasons["img1.png"]
    assert "got 'maybe' at row 2 (path='img1.png')" in reasons["img1.png"]
    assert "column 'age'" in reasons["img3.png"] and "'abc'" in reasons["img3.png"]
    assert "column 'sex'" in reasons["img4.png"]
    assert "column 'label'" in reasons["img6.png"]
    assert len(table.rows) == 4
    assert all("\n" not in r for r in reasons.values())


def test_labels_as_names_or_indices_map_to_the_same_classes(tmp_path: Path) -> None:
    rows = _rows(4)
    rows[2]["label"] = "1"
    table = read_manifest_csv(_csv(tmp_path, rows), classes=["benign", "malignant"])
    assert table.rows["label"].tolist() == [0, 1, 1, 1]
    assert table.rows["label_name"].tolist() == ["benign", "malignant", "malignant", "malignant"]


def test_inferred_classes_integer_and_names() -> None:
    assert resolve_classes(pd.Series(["0", "1", "2", "1"]), None).names == ("0", "1", "2")
    assert resolve_classes(pd.Series(["b", "a", "b"]), None).names == ("a", "b")


def test_a_rare_class_is_flagged_as_a_possible_typo(tmp_path: Path) -> None:
    rows = _rows(8)
    rows[5]["label"] = "benigm"
    table = read_manifest_csv(_csv(tmp_path, rows))
    assert any("'benigm' has only 1 image" in w for w in table.warnings)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda df: df.drop(columns="label"), "no 'label' column"),
        (lambda df: df.drop(columns="path"), "no 'path' column"),
        (lambda df: df.assign(label="benign"), "only one class"),
        (lambda df: df.assign(path=["a.png"] * len(df)), "duplicated value"),
    ],
)
def test_table_level_errors_stop_with_one_message(tmp_path: Path, mutate, match: str) -> None:
    p = tmp_path / "m.csv"
    mutate(pd.DataFrame(_rows())).to_csv(p, index=False)
    with pytest.raises(ManifestError, match=match):
        read_manifest_csv(p)


def test_empty_file_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest_csv(tmp_path / "e.csv")
    with pytest.raises(FileNotFoundError):
        read_manifest_csv(tmp_path / "nope.csv")


def test_phi_like_columns_are_dropped_and_missing_patient_warned(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "patient_id"} for r in _rows()]
    for r in rows:
        r.update({"patient_name": "Doe^John", "study_date": "20200101", "scanner_room": "3"})
    with pytest.warns(UserWarning) as record:
        table = read_manifest_csv(_csv(tmp_path, rows))
    assert "patient_name" not in table.rows and "study_date" not in table.rows
    assert "scanner_room" in table.rows  # unknown, harmless columns are kept
    assert any(MSG_NO_PATIENT in str(w.message) for w in record)


def test_annotator_columns_validated_and_mapped(tmp_path: Path) -> None:
    rows = _rows(6)
    for i, r in enumerate(rows):
        r["label_dr_a"] = r["label"]
        r["label_dr_b"] = "benign" if i != 2 else None
    rows[4]["label_dr_b"] = "nope"
    table = read_manifest_csv(_csv(tmp_path, rows))
    assert table.refused["source"].tolist() == ["img4.png"]
    assert "column 'label_dr_b'" in table.refused["reason"].iloc[0]
    assert table.rows["label_dr_b"].isna().sum() == 1
    assert "label_name" in table.rows  # not mistaken for an annotator column


def test_uid_keys_are_not_quoted_in_refusals() -> None:
    df = pd.DataFrame({"sop_instance_uid": ["1.2.3", "1.2.4", "1.2.5"],
                       "label": ["a", "b", "zzz"]})
    table = validate_label_table(df, source="labels.csv", key_col="sop_instance_uid",
                                 classes=["a", "b"], quote_key=False)
    assert table.refused["source"].tolist() == ["labels.csv row 3"]
    assert "1.2.5" not in table.refused["reason"].iloc[0]
