"""Run directories for the dashboard tests, built once per session (seconds, no training).

* ``demo_run``: a 160-image run with sites, sex and age, a decent synthetic model's
  out-of-fold outputs (8% planted label flips), masked re-scoring, learning history, a
  planted cross-patient duplicate pair and a real audit (every registered check);
* ``external_run``: predictions of an external model through
  :func:`medaudit.audit_predictions` (no images, no masked arrays, no history);
* ``empty_run``: ingested and audited with no check, so no finding at all.

Tests get private copies (they write ``reviews.sqlite``).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from audit.engine import run_audit
from audit.rundir import RunDir
from tests.conftest import build_tiny_run
from tests.reports.conftest import add_model_outputs

N = 160
#: The planted duplicate: row DUP_B is a copy of row DUP_A under another patient.
DUP_A, DUP_B = 3, 100


def build_demo_like_run(path: Path) -> RunDir:
    """The audited demo-like run (see the module docstring)."""
    run = build_tiny_run(path, n=N, size=32)
    m = run.read_manifest()
    rng = np.random.default_rng(1)
    m["sex"] = rng.choice(["F", "M"], len(m))
    m["age"] = rng.integers(20, 90, len(m)).astype(float)
    run.write_manifest(m)
    imgs = run.read_array("images")
    imgs[DUP_B] = imgs[DUP_A]
    run.write_array("images", imgs)
    add_model_outputs(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_audit(run)
    return run


def build_external_run(path: Path) -> RunDir:
    """External predictions only (no images, no masked arrays)."""
    import medaudit

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    p1 = np.clip(0.25 + 0.5 * y + rng.normal(0, 0.15, 120), 0.01, 0.99)
    p1[:6] = 1 - p1[:6]  # a few confident disagreements
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        medaudit.audit_predictions(
            y,
            np.c_[1 - p1, p1],
            class_names=["benign", "malignant"],
            patient_ids=[f"p{i // 2}" for i in range(120)],
            metadata={"site": np.where(np.arange(120) % 3, "A", "B")},
            out=path,
        )
    return RunDir(path)


def build_empty_run(path: Path) -> RunDir:
    """Ingested and audited with no check: no finding."""
    run = build_tiny_run(path, n=40, size=16)
    run_audit(run, checks=[])
    return run


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("dashboard-runs")
    return {
        "demo": build_demo_like_run(base / "demo").path,
        "external": build_external_run(base / "external").path,
        "empty": build_empty_run(base / "empty").path,
    }


@pytest.fixture
def runs_folder(_templates: dict[str, Path], tmp_path: Path) -> Path:
    """A private folder holding copies of the three runs (``demo``, ``external``, ``empty``)."""
    folder = tmp_path / "runs"
    for name, src in _templates.items():
        shutil.copytree(src, folder / name)
    return folder


@pytest.fixture
def demo_run(runs_folder: Path) -> RunDir:
    """A private copy of the demo-like run."""
    return RunDir(runs_folder / "demo")
