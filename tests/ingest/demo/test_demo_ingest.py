"""The demo dataset through ingestion: planted refusals, markers and PHI (acceptance data)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from audit.rundir import RunDir
from ingest.demo import CLASS_NAMES, DemoConfig, generate_demo
from ingest.sources import IngestOptions, ingest_dicom_dir
from tests.dicom_factory import run_dir_text


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunDir, dict]:
    base = tmp_path_factory.mktemp("demo")
    ds = generate_demo(base / "data", DemoConfig(n_patients=120, image_size=96, seed=3))
    ingest_dicom_dir(ds.dicom_dir, ds.labels_csv, base / "run",
                     IngestOptions(image_size=48, classes=CLASS_NAMES))
    return ds.dicom_dir, RunDir(base / "run"), json.loads(ds.ground_truth.read_text())


def test_planted_bad_files_and_only_those_are_quarantined(demo_run: tuple[Path, RunDir, dict]) -> None:
    _, run, truth = demo_run
    refused = set(run.read_quarantine()["source"])
    assert refused == set(truth["corrupted"]) | set(truth["non_image"])
    assert run.n_samples() == len(truth["true_labels"]) - len(refused)
    for reason in run.read_quarantine()["reason"]:  # one clean sentence, no path left over
        assert ",;" not in reason and ", ;" not in reason and "path=" not in reason, reason


def test_recorded_labels_and_sites_survive_ingestion(demo_run: tuple[Path, RunDir, dict]) -> None:
    _, run, truth = demo_run
    m = run.read_manifest().set_index("sample_id")
    recorded = {p: v["recorded_label"] for p, v in truth["images"].items() if p in m.index}
    assert (m.loc[list(recorded), "label_name"] == pd.Series(recorded)).all()
    # three scanners, three pseudonymised sites, one site per scanner
    assert m["scanner"].nunique() == 3 and m["site"].nunique() == 3
    assert m.groupby("scanner")["site"].nunique().eq(1).all()


def test_burned_in_marker_site_is_measured(demo_run: tuple[Path, RunDir, dict]) -> None:
    _, run, truth = demo_run
    props = run.read_image_properties().set_index("sample_id")
    marked = {p for p, v in truth["images"].items() if truth["sites"][v["site"]]["marker"]}
    marked &= set(props.index)
    flagged = set(props.index[props["has_corner_mark"]])
    assert marked and flagged == marked


def test_no_demo_identifier_reaches_the_run_directory(demo_run: tuple[Path, RunDir, dict]) -> None:
    dicom_dir, run, _ = demo_run
    text = run_dir_text(run.path)
    for f in sorted(dicom_dir.rglob("*.dcm"))[:40]:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # the planted garbage file
            continue
        for kw in ("PatientName", "PatientID", "InstitutionName", "AccessionNumber",
                   "StudyDate", "PatientBirthDate", "SOPInstanceUID", "StudyInstanceUID"):
            value = str(ds.get(kw, "") or "")
            if len(value) >= 6:
                assert value not in text, f"{kw} {value!r} leaked"
