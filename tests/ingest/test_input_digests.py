"""Every input file's content digest is recorded in run.json (ingest and external predictions)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.rundir import RunDir
from ingest.ingest_cache import file_digest
from ingest.predictions import ingest_predictions
from ingest.sources import INPUT_DIGEST_ALGORITHM, IngestOptions, ingest_manifest, ingest_npz


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDAUDIT_SECRET", "test-secret-0123456789abcdef0123456789")
    monkeypatch.setenv("MEDAUDIT_CACHE_DIR", str(tmp_path / "cache"))


def _pngs(folder: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["neg", "pos"][i % 2], "patient_id": f"P{i}"})
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)
    return folder / "m.csv"


def test_manifest_ingest_records_one_digest_per_input_file(tmp_path: Path) -> None:
    csv = _pngs(tmp_path / "data")
    ingest_manifest(csv, tmp_path / "run", IngestOptions(image_size=16))
    record = RunDir(tmp_path / "run").read_run_json()["ingest"]["input_files"]
    assert record["algorithm"] == INPUT_DIGEST_ALGORITHM
    files = record["files"]
    assert next(iter(files)) == "m.csv"
    assert set(files) == {"m.csv", *(f"{i}.png" for i in range(8))}
    assert files["3.png"] == file_digest(tmp_path / "data" / "3.png")
    # a cache hit records the same digests
    ingest_manifest(csv, tmp_path / "run2", IngestOptions(image_size=16))
    again = RunDir(tmp_path / "run2").read_run_json()["ingest"]
    assert again["cache_hit"] and again["input_files"]["files"] == files


def test_npz_ingest_records_the_archive(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, train_images=(rng.random((6, 8, 8)) * 255).astype(np.uint8),
             train_labels=np.array([[0], [1], [0], [1], [0], [1]]))
    ingest_npz(npz, tmp_path / "run", IngestOptions(image_size=8, use_cache=False))
    files = RunDir(tmp_path / "run").read_run_json()["ingest"]["input_files"]["files"]
    assert files == {"tiny.npz": file_digest(npz)}


def test_external_predictions_record_sha256_per_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = [f"i{i}" for i in range(20)]
    y = rng.integers(0, 2, 20)
    pd.DataFrame({"sample_id": ids, "label": y}).to_csv(tmp_path / "labels.csv", index=False)
    p1 = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, 20), 0.01, 0.99)
    pd.DataFrame({"sample_id": ids, "0": 1 - p1, "1": p1}).to_csv(tmp_path / "p.csv", index=False)
    run = ingest_predictions(tmp_path / "labels.csv", tmp_path / "p.csv", out=tmp_path / "ext")
    record = run.read_run_json()["external"]["input_files"]
    assert record["algorithm"] == "SHA-256"
    assert record["files"] == {
        name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        for name in ("labels.csv", "p.csv")
    }
