"""ground_truth.json: consistent with the files and labels.csv, and read back with checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ingest.demo import CLASS_NAMES, DemoConfig, DemoDataset, load_ground_truth

Demo = tuple[DemoDataset, dict[str, Any]]


def test_labels_csv_matches_files_and_ground_truth(
    demo: Demo, labels: dict[str, str], small_config: DemoConfig
) -> None:
    ds, truth = demo
    on_disk = {
        p.relative_to(ds.dicom_dir).as_posix() for p in ds.dicom_dir.rglob("*") if p.is_file()
    }
    assert set(labels) == on_disk == set(truth["true_labels"])
    assert set(labels.values()) <= set(CLASS_NAMES)
    unreadable = set(truth["corrupted"]) | set(truth["non_image"])
    assert set(truth["images"]) == on_disk - unreadable
    assert len(truth["corrupted"]) == small_config.n_corrupted
    assert len(truth["non_image"]) == small_config.n_non_image
    for path, info in truth["images"].items():
        assert info["recorded_label"] == labels[path]
        assert info["true_label"] == truth["true_labels"][path]


def test_counts_agree_with_the_lists(demo: Demo) -> None:
    _, truth = demo
    counts = truth["counts"]
    assert counts["files"] == len(truth["true_labels"])
    assert counts["readable_images"] == len(truth["images"])
    assert counts["patients_with_readable_images"] == len(
        {v["patient"] for v in truth["images"].values()}
    )
    per_site = [s["n_images"] for s in truth["sites"].values()]
    assert sum(per_site) == counts["readable_images"]


def test_duplicate_label_conflicts_are_listed(demo: Demo, labels: dict[str, str]) -> None:
    _, truth = demo
    pairs = truth["exact_duplicates"] + truth["near_duplicates"] + truth["cross_patient_duplicates"]
    conflicts = [[a, b] for a, b in pairs if labels[a] != labels[b]]
    assert truth["duplicate_label_conflicts"] == conflicts


def test_load_ground_truth_takes_the_file_or_its_directory(demo: Demo) -> None:
    ds, truth = demo
    assert load_ground_truth(ds.root) == load_ground_truth(ds.ground_truth) == truth


def test_load_ground_truth_rejects_other_json(tmp_path: Path) -> None:
    bad = tmp_path / "ground_truth.json"
    bad.write_text(json.dumps({"generator": "other", "version": 1}))
    with pytest.raises(ValueError, match="not a medaudit demo ground truth"):
        load_ground_truth(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="got generator=None and version=None"):
        load_ground_truth(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_ground_truth(tmp_path / "missing.json")
