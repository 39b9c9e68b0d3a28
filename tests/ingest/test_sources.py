"""Ingestion end to end: quarantine, PHI, cache reuse, the three sources, run.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.rundir import RunDir
from ingest.manifest import ManifestError
from ingest.sources import IngestOptions, ingest_dicom_dir, ingest_manifest, ingest_npz
from tests.dicom_factory import PHI, run_dir_text, write_dicom


def _phantom(rng: np.random.Generator, size: int = 48, lesion: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 1500 + 1200 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.1)
    if lesion:
        img += 800 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.4) ** 2) / 0.003)
    return np.clip(img + rng.normal(0, 40, img.shape), 0, 4095).astype(np.uint16)


@pytest.fixture
def dicom_folder(tmp_path: Path) -> tuple[Path, Path]:
    """12 DICOMs (6 patients), one truncated, one without pixels, one stray text file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "dicom"
    rows = []
    for i in range(12):
        f = write_dicom(root / f"d{i:02d}.dcm", _phantom(rng, lesion=i % 2 == 1),
                        patient_id=f"ZZQPHIID{i // 2}", WindowCenter=2000, WindowWidth=3000)
        rows.append({"path": f.name, "label": ["normal", "nodule"][i % 2]})
    data = (root / "d11.dcm").read_bytes()
    (root / "d11.dcm").write_bytes(data[: len(data) - 2000])  # truncated pixel data
    write_dicom(root / "sr.dcm", None)  # no PixelData
    rows.append({"path": "sr.dcm", "label": "normal"})
    (root / "notes.txt").write_text("not a dicom")
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(labels, index=False)
    return root, labels


def test_dicom_folder_quarantine_and_phi(dicom_folder: tuple[Path, Path], tmp_path: Path) -> None:
    root, labels = dicom_folder
    out = tmp_path / "run"
    summary = ingest_dicom_dir(root, labels, out, IngestOptions(image_size=32, classes=("normal", "nodule")))
    assert (summary.n_accepted, summary.n_refused) == (11, 3)
    q = RunDir(out).read_quarantine().set_index("source")["reason"]
    assert set(q.index) == {"d11.dcm", "sr.dcm", "notes.txt"}
    assert "PixelData" in q["sr.dcm"]
    assert all("\n" not in r for r in q)
    m = RunDir(out).read_manifest()
    assert m["patient_key"].nunique() == 6
    assert m["patient_key"].str.startswith("p-").all()
    assert m["site"].str.startswith("site-").all()
    assert set(m["scanner"]) == {"Acme DR-1"}
    assert m["dicom_windowing"].eq("window").all()
    text = run_dir_text(out)
    for value in PHI.values():
        assert value not in text, f"PHI {value!r} leaked into the run directory"
    for i in range(6):
        assert f"ZZQPHIID{i}" not in text


def test_dicom_folder_join_on_sop_uid(dicom_folder: tuple[Path, Path], tmp_path: Path) -> None:
    import pydicom

    root, _ = dicom_folder
    uids = []
    for i in range(10):
        ds = pydicom.dcmread(root / f"d{i:02d}.dcm", stop_before_pixels=True)
        uids.append({"sop_instance_uid": ds.SOPInstanceUID, "label": ["normal", "nodule"][i % 2]})
    uids.append({"sop_instance_uid": "1.2.3.999", "label": "normal"})  # matches no file
    labels = tmp_path / "uids.csv"
    pd.DataFrame(uids).to_csv(labels, index=False)
    summary = ingest_dicom_dir(root, labels, tmp_path / "run", IngestOptions(image_size=32))
    assert summary.n_accepted == 10
    q = RunDir(tmp_path / "run").read_quarantine()
    assert "uids.csv row 11" in q["source"].tolist()
    assert "1.2.3.999" not in q.to_csv()  # UIDs are identifiers: never quoted


def test_cache_reuse_is_identical_and_skips_decoding(dicom_folder: tuple[Path, Path], tmp_path: Path) -> None:
    root, labels = dicom_folder
    opts = IngestOptions(image_size=32)
    first = ingest_dicom_dir(root, labels, tmp_path / "a", opts)
    second = ingest_dicom_dir(root, labels, tmp_path / "b", opts)
    assert not first.cache_hit and second.cache_hit
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    np.testing.assert_array_equal(a.read_array("images"), b.read_array("images"))
    pd.testing.assert_frame_equal(a.read_manifest(), b.read_manifest())
    # a changed option or a changed file is a different cache entry
    assert not ingest_dicom_dir(root, labels, tmp_path / "c", IngestOptions(image_size=24)).cache_hit
    write_dicom(root / "d00.dcm", np.zeros((48, 48)) + 100, patient_id="ZZQPHIID0")
    assert not ingest_dicom_dir(root, labels, tmp_path / "d", opts).cache_hit


def test_manifest_of_pngs_with_bad_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(10):
        Image.fromarray((rng.random((30, 40)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["a", "b"][i % 2], "patient_id": f"P{i // 2}"})
    rows[2]["label"] = "maybe"
    rows[3]["path"] = "gone.png"
    (tmp_path / "4.png").write_bytes(b"\x89PNG broken")
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    s = ingest_manifest(tmp_path / "m.csv", tmp_path / "run", IngestOptions(image_size=16, classes=("a", "b")))
    assert (s.n_accepted, s.n_refused) == (7, 3)
    run = RunDir(tmp_path / "run")
    assert run.read_array("images").shape == (7, 1, 16, 16)
    props = run.read_image_properties()
    assert props["orig_width"].eq(40).all() and props["bits_stored"].eq(8).all()
    info = run.read_run_json()
    assert info["classes"] == ["a", "b"]
    assert {"cache_key", "options", "versions", "seconds"} <= set(info["ingest"])


def test_rgb_channels_option(tmp_path: Path) -> None:
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    pd.DataFrame({"path": [f"{i}.png" for i in range(4)], "label": [0, 1, 0, 1]}).to_csv(
        tmp_path / "m.csv", index=False)
    s = ingest_manifest(tmp_path / "m.csv", tmp_path / "run", IngestOptions(image_size=8, channels="rgb"))
    assert RunDir(s.run.path).read_array("images").shape == (4, 3, 8, 8)
    assert any("each image is treated as its own patient" in w for w in s.warnings)


def test_npz_medmnist_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    np.savez(tmp_path / "m.npz", **arrays)
    s = ingest_npz(tmp_path / "m.npz", tmp_path / "run", IngestOptions(image_size=28))
    m = RunDir(tmp_path / "run").read_manifest()
    assert s.n_accepted == 22 and m["split"].value_counts().to_dict() == {"train": 12, "test": 6, "val": 4}
    imgs = RunDir(tmp_path / "run").read_array("images")
    np.testing.assert_array_equal(imgs[0, 0], arrays["train_images"][0])  # same size: untouched
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ManifestError, match="train_images"):
        ingest_npz(tmp_path / "bad.npz", tmp_path / "run2")


def test_existing_run_of_other_inputs_is_not_silently_replaced(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", train_images=rng.integers(0, 255, (6, 8, 8), dtype=np.uint8),
             train_labels=np.array([0, 1] * 3))
    np.savez(tmp_path / "b.npz", train_images=rng.integers(0, 255, (8, 8, 8), dtype=np.uint8),
             train_labels=np.array([0, 1] * 4))
    ingest_npz(tmp_path / "a.npz", tmp_path / "run", IngestOptions(image_size=8))
    with pytest.raises(ValueError, match="overwrite=True"):
        ingest_npz(tmp_path / "b.npz", tmp_path / "run", IngestOptions(image_size=8))
    s = ingest_npz(tmp_path / "b.npz", tmp_path / "run", IngestOptions(image_size=8, overwrite=True))
    assert s.n_accepted == 8
    assert json.loads((tmp_path / "run" / "run.json").read_text())["ingest"]["n_accepted"] == 8
