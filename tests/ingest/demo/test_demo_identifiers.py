"""Fake identifiers: fixed by the configuration, and absent from paths and labels.csv."""

from __future__ import annotations

from typing import Any

import pydicom

from ingest.demo import DemoDataset
from ingest.demo._identifiers import uid

Demo = tuple[DemoDataset, dict[str, Any]]


def test_uids_are_fixed_by_digest_and_key() -> None:
    assert uid("abc", "sop", 1) == uid("abc", "sop", 1)
    assert len({uid("abc", "sop", 1), uid("abd", "sop", 1), uid("abc", "sop", 2)}) == 3
    assert len(uid("abc", "study", "3.0")) <= 64


def test_no_identifier_in_paths_or_labels(
    demo: Demo, headers: dict[str, pydicom.Dataset]
) -> None:
    ds, _ = demo
    csv_text = ds.labels_csv.read_text(encoding="utf-8")
    names = "\n".join(p.relative_to(ds.root).as_posix() for p in ds.root.rglob("*"))
    for h in headers.values():
        for kw in ("PatientID", "PatientName", "InstitutionName", "AccessionNumber"):
            value = str(h.get(kw, ""))
            assert len(value) >= 6
            assert value not in csv_text, kw
            assert value not in names, kw
        assert str(h.PatientName).split("^")[-1] not in names


def test_one_folder_per_patient(headers: dict[str, pydicom.Dataset]) -> None:
    folder_of: dict[str, set[str]] = {}
    for path, h in headers.items():
        folder_of.setdefault(h.PatientID, set()).add(path.split("/")[0])
    assert all(len(folders) == 1 for folders in folder_of.values())
    assert len({next(iter(f)) for f in folder_of.values()}) == len(folder_of)
