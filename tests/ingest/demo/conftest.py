"""One small demo dataset, generated once and shared by the demo tests."""

from __future__ import annotations

import csv
from typing import Any

import numpy as np
import pydicom
import pytest

from ingest.demo import DemoConfig, DemoDataset, generate_demo, load_ground_truth

SMALL = DemoConfig(n_patients=120, image_size=64, seed=7)

Demo = tuple[DemoDataset, dict[str, Any]]


def display_values(ds: pydicom.Dataset) -> np.ndarray:
    """Rescale, window and (MONOCHROME1) invert to [0, 1], as ingestion does."""
    m = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    d = np.clip((m - (c - w / 2)) / w, 0.0, 1.0)
    return 1.0 - d if ds.PhotometricInterpretation == "MONOCHROME1" else d


@pytest.fixture(scope="session")
def small_config() -> DemoConfig:
    """The configuration of the shared dataset."""
    return SMALL


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The shared dataset and its ground truth."""
    ds = generate_demo(tmp_path_factory.mktemp("demo") / "out", SMALL)
    return ds, load_ground_truth(ds.ground_truth)


@pytest.fixture(scope="session")
def labels(demo: Demo) -> dict[str, str]:
    """``labels.csv`` as path -> recorded class name."""
    ds, _ = demo
    with ds.labels_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["path", "label"]
    return {r["path"]: r["label"] for r in rows}


@pytest.fixture(scope="session")
def headers(demo: Demo) -> dict[str, pydicom.Dataset]:
    """Every readable image, read with pydicom, by path."""
    ds, truth = demo
    return {p: pydicom.dcmread(ds.dicom_dir / p) for p in truth["images"]}


@pytest.fixture(scope="session")
def displays(headers: dict[str, pydicom.Dataset]) -> dict[str, np.ndarray]:
    """Every readable image in display values [0, 1], by path."""
    return {p: display_values(h) for p, h in headers.items()}
