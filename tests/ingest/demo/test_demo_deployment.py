"""The after-deployment batch: another scanner's profile and the screening prevalence, recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingest.demo import DeploymentConfig, generate_deployment_batch
from ingest.dicom import read_dicom


def _mean_display(root: Path) -> float:
    return float(np.mean([read_dicom(p).pixels.mean() for p in sorted((root / "dicom").rglob("*.dcm"))]))


def test_batch_is_brighter_than_the_same_batch_without_the_new_profile(tmp_path: Path) -> None:
    cfg = DeploymentConfig(n_patients=30, image_size=32)
    truth = generate_deployment_batch(tmp_path / "new", cfg)
    generate_deployment_batch(tmp_path / "plain", DeploymentConfig(n_patients=30, image_size=32,
                                                                    gamma=1.0, offset=0.0))
    assert _mean_display(tmp_path / "new") > _mean_display(tmp_path / "plain") + 0.05
    on_disk = json.loads((tmp_path / "new" / "ground_truth.json").read_text())
    assert on_disk == truth and truth["kind"] == "deployment_batch"
    assert truth["prevalence"]["target"] == 0.05 and truth["planted"]["scanner"]["model"] == cfg.model
    header = read_dicom(next((tmp_path / "new" / "dicom").rglob("*.dcm"))).meta
    assert header.get("manufacturer") == cfg.manufacturer
    assert not (tmp_path / "new" / ".render").exists()
    with pytest.raises(FileExistsError):
        generate_deployment_batch(tmp_path / "new", cfg)
