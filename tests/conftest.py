"""Shared fixtures: tiny seeded run directories with planted problems."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.rundir import RunDir


def build_tiny_run(
    path: Path,
    *,
    n: int = 160,
    size: int = 32,
    channels: int = 1,
    n_classes: int = 2,
    images_per_patient: int = 2,
    seed: int = 0,
    signal: float = 0.35,
) -> RunDir:
    """Write a minimal ingested run directory (manifest, images, run.json).

    Class ``k`` images carry a bright square of intensity ``signal * k`` in a
    random position, on noisy background: learnable by a tiny CNN in a few epochs.

    Returns
    -------
    RunDir
        With ``manifest.parquet`` (N rows), ``images.npy`` ``(N, C, S, S)`` uint8
        and ``run.json`` (``classes``).
    """
    rng = np.random.default_rng(seed)
    n_patients = n // images_per_patient
    patient_label = rng.integers(0, n_classes, n_patients)
    patient = np.repeat(np.arange(n_patients), images_per_patient)[:n]
    labels = patient_label[patient]
    imgs = rng.normal(0.4, 0.08, (n, channels, size, size))
    q = size // 4
    for i, y in enumerate(labels):
        r, c = rng.integers(2, size - q - 2, 2)
        imgs[i, :, r : r + q, c : c + q] += signal * y
    imgs = (np.clip(imgs, 0, 1) * 255).astype(np.uint8)
    classes = [f"class_{k}" for k in range(n_classes)]
    manifest = pd.DataFrame(
        {
            "sample_id": [f"s{i:05d}" for i in range(n)],
            "label": labels.astype(np.int64),
            "label_name": [classes[y] for y in labels],
            "patient_key": [f"p{p:04d}" for p in patient],
            "site": np.where(rng.random(n) < 0.5, "site-a", "site-b"),
        }
    )
    run = RunDir(path)
    run.write_manifest(manifest)
    run.write_array("images", imgs)
    run.update_run_json({"classes": classes})
    return run


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the secret key and the ingest cache of tests out of the user's home."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("MEDAUDIT_SECRET_FILE", str(base / "secret.key"))
    monkeypatch.setenv("MEDAUDIT_CACHE_DIR", str(base / "cache"))
    monkeypatch.delenv("MEDAUDIT_SECRET", raising=False)


@pytest.fixture
def tiny_run(tmp_path: Path) -> RunDir:
    """A 160-image, 2-class, 32 px run directory (2 images per patient)."""
    return build_tiny_run(tmp_path / "run")


@pytest.fixture
def make_tiny_run(tmp_path: Path) -> Callable[..., RunDir]:
    """Factory: ``make_tiny_run(name="run", **kwargs)`` -> RunDir (see build_tiny_run)."""

    def _make(name: str = "run", **kwargs: object) -> RunDir:
        return build_tiny_run(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return _make
