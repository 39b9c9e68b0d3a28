"""The synthetic demo generator: determinism, ground-truth consistency, planted problems."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ingest.demo import (
    CLASS_NAMES,
    GENERATOR_NAME,
    DemoConfig,
    DemoDataset,
    generate_demo,
    load_ground_truth,
)

SMALL = DemoConfig(n_patients=120, image_size=64, seed=7)
SITES = ("site_a", "site_b", "site_c")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoDataset, dict[str, Any]]:
    ds = generate_demo(tmp_path_factory.mktemp("demo") / "out", SMALL)
    return ds, load_ground_truth(ds.ground_truth)


@pytest.fixture(scope="module")
def labels(demo: tuple[DemoDataset, dict[str, Any]]) -> dict[str, str]:
    ds, _ = demo
    with ds.labels_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["path", "label"]
    return {r["path"]: r["label"] for r in rows}


@pytest.fixture(scope="module")
def headers(demo: tuple[DemoDataset, dict[str, Any]]) -> dict[str, pydicom.Dataset]:
    ds, truth = demo
    return {p: pydicom.dcmread(ds.dicom_dir / p) for p in truth["images"]}


def _display(ds: pydicom.Dataset) -> np.ndarray:
    """Rescale, window and (MONOCHROME1) invert to [0, 1], as ingestion does."""
    m = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    d = np.clip((m - (c - w / 2)) / w, 0.0, 1.0)
    return 1.0 - d if ds.PhotometricInterpretation == "MONOCHROME1" else d


# ---------------------------------------------------------------- determinism


def test_same_config_gives_byte_identical_output(
    demo: tuple[DemoDataset, dict[str, Any]], tmp_path: Path
) -> None:
    first, _ = demo
    second = generate_demo(tmp_path / "again", SMALL)
    assert first.labels_csv.read_bytes() == second.labels_csv.read_bytes()
    assert first.ground_truth.read_bytes() == second.ground_truth.read_bytes()
    files = sorted(p.relative_to(first.dicom_dir) for p in first.dicom_dir.rglob("*.dcm"))
    assert files == sorted(p.relative_to(second.dicom_dir) for p in second.dicom_dir.rglob("*.dcm"))
    for rel in files:
        assert (first.dicom_dir / rel).read_bytes() == (second.dicom_dir / rel).read_bytes(), rel


def test_another_seed_gives_other_data(
    demo: tuple[DemoDataset, dict[str, Any]], tmp_path: Path
) -> None:
    first, _ = demo
    other = generate_demo(tmp_path / "other", DemoConfig(n_patients=120, image_size=64, seed=8))
    assert first.labels_csv.read_bytes() != other.labels_csv.read_bytes()


def test_returned_paths(demo: tuple[DemoDataset, dict[str, Any]]) -> None:
    ds, truth = demo
    assert ds.dicom_dir == ds.root / "dicom"
    assert ds.labels_csv == ds.root / "labels.csv"
    assert ds.ground_truth == ds.root / "ground_truth.json"
    assert truth["generator"] == GENERATOR_NAME and truth["version"] == 1
    assert truth["class_names"] == list(CLASS_NAMES) == ["normal", "nodule"]
    assert truth["config"]["n_patients"] == SMALL.n_patients
    assert load_ground_truth(ds.root) == truth  # a directory works too


# ---------------------------------------------------------------- consistency


def test_labels_csv_matches_files_and_ground_truth(
    demo: tuple[DemoDataset, dict[str, Any]], labels: dict[str, str]
) -> None:
    ds, truth = demo
    on_disk = {
        p.relative_to(ds.dicom_dir).as_posix() for p in ds.dicom_dir.rglob("*") if p.is_file()
    }
    assert set(labels) == on_disk == set(truth["true_labels"])
    assert set(labels.values()) <= set(CLASS_NAMES)
    unreadable = set(truth["corrupted"]) | set(truth["non_image"])
    assert set(truth["images"]) == on_disk - unreadable
    assert len(truth["corrupted"]) == SMALL.n_corrupted
    assert len(truth["non_image"]) == SMALL.n_non_image
    for path, info in truth["images"].items():
        assert info["recorded_label"] == labels[path]
        assert info["true_label"] == truth["true_labels"][path]


def test_flipped_set_is_exactly_where_recorded_differs(
    demo: tuple[DemoDataset, dict[str, Any]], labels: dict[str, str]
) -> None:
    _, truth = demo
    noise = truth["label_noise"]
    differs = {p for p, lab in labels.items() if lab != truth["true_labels"][p]}
    flipped = {f["path"]: f for f in noise["flipped"]}
    assert set(flipped) == differs and len(flipped) == len(noise["flipped"])
    for path, f in flipped.items():
        assert f["true_label"] == truth["true_labels"][path]
        assert f["recorded_label"] == labels[path] != f["true_label"]
    fn = sum(f["true_label"] == "nodule" for f in flipped.values())
    assert fn == noise["n_flipped_positive_to_negative"]
    assert fn == round(SMALL.label_noise_fn_rate * noise["n_true_positive"])
    assert len(flipped) - fn == round(SMALL.label_noise_fp_rate * noise["n_true_negative"])
    assert fn > len(flipped) - fn  # more missed positives than false positives
    assert not differs & (set(truth["corrupted"]) | set(truth["non_image"]))


def test_prevalence_overall_and_by_site(
    demo: tuple[DemoDataset, dict[str, Any]], labels: dict[str, str]
) -> None:
    _, truth = demo
    prev = truth["prevalence"]
    images = truth["images"]
    true = np.array([v["true_label"] == "nodule" for v in images.values()])
    recorded = np.array([labels[p] == "nodule" for p in images])
    assert prev["overall_true"] == pytest.approx(true.mean(), abs=1e-6)
    assert prev["overall_recorded"] == pytest.approx(recorded.mean(), abs=1e-6)
    assert prev["overall_true"] == pytest.approx(SMALL.prevalence, abs=0.04)
    assert prev["screening"] == SMALL.screening_prevalence
    by_site = prev["by_site_true"]
    for site in SITES:
        in_site = np.array([v["site"] == site for v in images.values()])
        assert by_site[site] == pytest.approx(true[in_site].mean(), abs=1e-6)
    assert by_site["site_b"] > 0.45 and by_site["site_a"] < 0.2
    assert by_site["site_b"] - by_site["site_a"] > 0.3


def test_follow_up_patients_share_their_label(demo: tuple[DemoDataset, dict[str, Any]]) -> None:
    _, truth = demo
    groups = truth["follow_up_groups"]
    assert truth["multi_image_patients"] == len(groups) > 0
    for group in groups:
        assert 2 <= len(group) <= 4
        assert len({truth["images"][p]["true_label"] for p in group}) == 1
        assert len({truth["images"][p]["patient"] for p in group}) == 1
        assert len({Path(p).parent for p in group}) == 1  # one folder per patient


# ---------------------------------------------------------------- duplicates


def test_exact_duplicates(
    demo: tuple[DemoDataset, dict[str, Any]], headers: dict[str, pydicom.Dataset]
) -> None:
    _, truth = demo
    pairs = truth["exact_duplicates"]
    assert len(pairs) == SMALL.n_exact_duplicates
    for a, b in pairs:
        assert headers[a].PixelData == headers[b].PixelData
        assert headers[a].SOPInstanceUID != headers[b].SOPInstanceUID
        assert headers[a].PatientID == headers[b].PatientID
        assert truth["true_labels"][a] == truth["true_labels"][b]


def test_near_duplicates(
    demo: tuple[DemoDataset, dict[str, Any]], headers: dict[str, pydicom.Dataset]
) -> None:
    _, truth = demo
    pairs = truth["near_duplicates"]
    assert len(pairs) == SMALL.n_near_duplicates
    for a, b in pairs:
        assert headers[a].PixelData != headers[b].PixelData
        assert headers[a].PatientID == headers[b].PatientID
        da, db = _display(headers[a]), _display(headers[b])
        assert np.abs(da - db).mean() < 0.1
        assert truth["true_labels"][a] == truth["true_labels"][b]


def test_cross_patient_duplicates(
    demo: tuple[DemoDataset, dict[str, Any]], headers: dict[str, pydicom.Dataset]
) -> None:
    _, truth = demo
    pairs = truth["cross_patient_duplicates"]
    assert len(pairs) == SMALL.n_cross_patient_duplicates
    for a, b in pairs:
        assert headers[a].PixelData == headers[b].PixelData
        assert headers[a].PatientID != headers[b].PatientID
        assert headers[a].StudyInstanceUID != headers[b].StudyInstanceUID
        assert Path(a).parent != Path(b).parent
        info = truth["images"][b]
        assert info["patient"] != info["true_patient"] == truth["images"][a]["patient"]


def test_duplicate_label_conflicts_are_listed(
    demo: tuple[DemoDataset, dict[str, Any]], labels: dict[str, str]
) -> None:
    _, truth = demo
    pairs = truth["exact_duplicates"] + truth["near_duplicates"] + truth["cross_patient_duplicates"]
    conflicts = [[a, b] for a, b in pairs if labels[a] != labels[b]]
    assert truth["duplicate_label_conflicts"] == conflicts


# ---------------------------------------------------------------- bad files


def test_corrupted_files_fail_to_decode(demo: tuple[DemoDataset, dict[str, Any]]) -> None:
    ds, truth = demo
    kinds = truth["corrupted_kinds"]
    assert set(kinds) == set(truth["corrupted"])
    assert sorted(kinds.values()).count("not_dicom") == 1
    for path in truth["corrupted"]:
        with pytest.raises(Exception):  # noqa: B017 - any failure is the point
            pydicom.dcmread(ds.dicom_dir / path).pixel_array  # noqa: B018
        if kinds[path] == "not_dicom":
            with pytest.raises(InvalidDicomError):
                pydicom.dcmread(ds.dicom_dir / path)
        else:  # a real DICOM header, cut inside the pixel data
            head = pydicom.dcmread(ds.dicom_dir / path, stop_before_pixels=True)
            assert head.Rows == SMALL.image_size


def test_non_image_file_has_no_pixel_data(demo: tuple[DemoDataset, dict[str, Any]]) -> None:
    ds, truth = demo
    for path in truth["non_image"]:
        sr = pydicom.dcmread(ds.dicom_dir / path)
        assert "PixelData" not in sr
        assert sr.Modality == "SR"
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11"


# ---------------------------------------------------------------- headers and PHI


def test_headers_are_plausible(
    demo: tuple[DemoDataset, dict[str, Any]], headers: dict[str, pydicom.Dataset]
) -> None:
    ds, truth = demo
    sop = [h.SOPInstanceUID for h in headers.values()]
    assert len(set(sop)) == len(sop)
    for path, h in headers.items():
        site = truth["sites"][truth["images"][path]["site"]]
        assert (ds.dicom_dir / path).read_bytes()[128:132] == b"DICM"
        assert h.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert (h.BitsAllocated, h.BitsStored, h.HighBit, h.PixelRepresentation) == (16, 12, 11, 0)
        assert h.Rows == h.Columns == SMALL.image_size
        assert h.pixel_array.dtype == np.uint16 and h.pixel_array.max() <= 4095
        assert h.BodyPartExamined == "CHEST" and h.ViewPosition in ("PA", "AP")
        assert h.Modality == site["modality"] and h.SOPClassUID == site["sop_class_uid"]
        assert h.Manufacturer == site["manufacturer"]
        assert h.ManufacturerModelName == site["model"]
        assert h.PhotometricInterpretation == site["photometric_interpretation"]
        assert float(h.RescaleSlope) == site["rescale_slope"]
        assert h.PatientID.startswith("DEMO-PID-") and h.PatientAge.endswith("Y")
    used = {h.PhotometricInterpretation for h in headers.values()}
    assert used == {"MONOCHROME1", "MONOCHROME2"}
    assert len({h.Manufacturer for h in headers.values()}) == 3


def test_no_identifier_in_paths_or_labels(
    demo: tuple[DemoDataset, dict[str, Any]], headers: dict[str, pydicom.Dataset]
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


def test_site_b_has_a_burned_in_marker(
    demo: tuple[DemoDataset, dict[str, Any]], headers: dict[str, pydicom.Dataset]
) -> None:
    _, truth = demo
    r0, c0, r1, c1 = truth["sites"]["site_b"]["marker_box"]
    for path, h in headers.items():
        if truth["images"][path]["kind"] == "near_duplicate":
            continue  # shifted by 1-2 px together with the image
        corner = _display(h)[r0:r1, c0:c1]
        if truth["images"][path]["site"] == "site_b":
            assert h.BurnedInAnnotation == "YES"
            assert (corner > 0.98).mean() > 0.4
        else:
            assert (corner > 0.98).mean() < 0.05


# ---------------------------------------------------------------- the lesion


def test_nodules_are_present_at_the_recorded_place(
    demo: tuple[DemoDataset, dict[str, Any]], headers: dict[str, pydicom.Dataset]
) -> None:
    """Local contrast (disc minus ring) at each recorded nodule, against the same
    place in negative images, and a logistic regression on those patches."""
    _, truth = demo
    images = truth["images"]
    display = {p: _display(h) for p, h in headers.items()}
    negatives = sorted(p for p, v in images.items() if v["true_label"] == "normal")
    positives = sorted(p for p, v in images.items() if v["true_label"] == "nodule")
    assert all(images[p]["lesion"] is not None for p in positives)
    assert all(images[p]["lesion"] is None for p in negatives)
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[: SMALL.image_size, : SMALL.image_size]
    half = 4

    def contrast(img: np.ndarray, lesion: dict[str, float]) -> float:
        d = np.hypot(rows - lesion["row"], cols - lesion["col"])
        r = max(lesion["sigma_px"], 1.0)
        return float(img[d <= r].mean() - img[(d > 2 * r) & (d <= 3.5 * r)].mean())

    def patch(img: np.ndarray, lesion: dict[str, float]) -> np.ndarray:
        padded = np.pad(img, half, mode="edge")
        r, c = round(lesion["row"]) + half, round(lesion["col"]) + half
        return padded[r - half : r + half + 1, c - half : c + half + 1].ravel()

    pos_c, neg_c, x, y = [], [], [], []
    for p in positives:
        lesion = images[p]["lesion"]
        pos_c.append(contrast(display[p], lesion))
        x.append(patch(display[p], lesion))
        y.append(1)
        for q in rng.choice(negatives, 3, replace=False):
            neg_c.append(contrast(display[q], lesion))
            x.append(patch(display[q], lesion))
            y.append(0)
    assert np.mean(pos_c) > 0.05
    assert roc_auc_score([1] * len(pos_c) + [0] * len(neg_c), pos_c + neg_c) > 0.85
    xs, ys = np.array(x), np.array(y)
    xs -= xs.mean(axis=1, keepdims=True)  # position-relative, brightness-free
    scores = cross_val_predict(
        LogisticRegression(C=1.0, max_iter=2000),
        xs,
        ys,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        method="decision_function",
    )
    assert roc_auc_score(ys, scores) > 0.8


# ---------------------------------------------------------------- errors


def test_bad_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="DemoConfig"):
        generate_demo(tmp_path / "x", {"n_patients": 10})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prevalence") as err:
        generate_demo(tmp_path / "x", DemoConfig(prevalence=1.5, label_noise_fn_rate=-0.1))
    assert "label_noise_fn_rate" in str(err.value)  # every problem is reported
    with pytest.raises(ValueError, match="n_patients"):
        generate_demo(tmp_path / "x", DemoConfig(n_patients=3, image_size=32))
    assert not (tmp_path / "x" / "dicom").exists()


def test_existing_output_is_not_overwritten(demo: tuple[DemoDataset, dict[str, Any]]) -> None:
    ds, _ = demo
    with pytest.raises(FileExistsError, match="empty or new directory"):
        generate_demo(ds.root, SMALL)


def test_load_ground_truth_rejects_other_json(tmp_path: Path) -> None:
    bad = tmp_path / "ground_truth.json"
    bad.write_text(json.dumps({"generator": "other", "version": 1}))
    with pytest.raises(ValueError, match="not a medaudit demo ground truth"):
        load_ground_truth(bad)
    with pytest.raises(FileNotFoundError):
        load_ground_truth(tmp_path / "missing.json")
