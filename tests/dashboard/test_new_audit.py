"""The New-audit page starts ``medaudit run`` in the background and opens the run when done.

The preset is shortened to ingest + audit without training (``--no-train``) so the
test takes seconds; the command line, the process, the log, the progress and the
hand-over to the run's pages are the real ones.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dashboard import jobs
from tests.dashboard.test_app_pages import _app, _text


def _data_root(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    (root / "study" / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(
            root / "study" / "img" / f"{i}.png"
        )
        rows.append({"path": f"img/{i}.png", "label": ["neg", "pos"][i % 2], "patient_id": f"P{i}"})
    pd.DataFrame(rows).to_csv(root / "study" / "manifest.csv", index=False)
    return root


@pytest.fixture
def fast_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        jobs.PRESETS,
        "quick",
        (["--no-train", "--no-report", "--image-size", "16"], "test preset: ingest and audit only"),
    )


def _wait(job: jobs.Job, timeout: float = 180) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rc = job.poll()
        if rc is not None:
            return rc
        time.sleep(0.3)
    raise TimeoutError(job.tail())


def test_start_job_runs_medaudit_in_the_background(tmp_path: Path, fast_preset: None) -> None:
    root = _data_root(tmp_path / "data")
    runs = tmp_path / "runs"
    runs.mkdir()
    job = jobs.start_job(runs, "first", preset="quick", manifest=root / "study" / "manifest.csv")
    assert _wait(job) == 0, job.tail()
    assert (runs / "first" / "manifest.parquet").is_file()
    assert (runs / "first" / "findings.json").is_file()
    assert job.stage() == "done"
    listed = jobs.list_jobs(runs)
    assert [j.name for j in listed] == ["first"] and listed[0].returncode == 0
    with pytest.raises(ValueError, match="already exists"):
        jobs.start_job(runs, "first", preset="quick", manifest=root / "study" / "manifest.csv")
    with pytest.raises(ValueError, match="preset"):
        jobs.start_job(runs, "second", preset="slowest", manifest=root / "study" / "manifest.csv")


def test_new_audit_page_starts_follows_and_opens_the_run(
    monkeypatch: pytest.MonkeyPatch, runs_folder: Path, tmp_path: Path, fast_preset: None
) -> None:
    root = _data_root(tmp_path / "data")
    at = _app(monkeypatch, runs_folder, page="new_audit", data_root=root)
    assert at.selectbox(key="new-manifest").options == ["study/manifest.csv"]
    at.selectbox(key="new-manifest").set_value("study/manifest.csv")
    at.text_input(key="new-name").input("from-the-page")
    at.button(key="new-start").click().run()
    assert not at.exception and any("Started from-the-page" in s.value for s in at.success)
    job = jobs.list_jobs(runs_folder)[0]
    assert _wait(job) == 0, job.tail()
    at.run()
    assert "from-the-page" in _text(at) and "finished" in _text(at)
    at.button(key="open-from-the-page").click().run()
    assert not at.exception
    assert at.session_state["run"] == "from-the-page" and at.session_state["page"] == "overview"
    assert any("Overview · from-the-page" in h.value for h in at.header)
