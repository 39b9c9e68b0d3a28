"""Reports stay small: the HTML of a 100,000-image run is under 15 MB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.rundir import RunDir
from reports import ReportOptions, write_reports

N = 100_000
LIMIT = 15 * 1024 * 1024


def _large_run(path: Path) -> RunDir:
    rng = np.random.default_rng(0)
    patients = rng.integers(0, N // 2, N)
    labels = (rng.random(N) < 0.2).astype(np.int64)
    ids = [f"case{i:06d}/image.dcm" for i in range(N)]
    manifest = pd.DataFrame({
        "sample_id": ids, "label": labels,
        "label_name": np.where(labels == 1, "positive", "negative"),
        "patient_key": [f"p-{p:016x}" for p in patients],
        "site": rng.choice([f"site-{i:016x}" for i in range(6)], N),
        "scanner": rng.choice(["A", "B", "C"], N), "sex": rng.choice(["F", "M"], N),
        "age": rng.integers(18, 95, N).astype(float), "path": ids})
    run = RunDir(path)
    run.write_manifest(manifest)
    images = rng.integers(0, 255, (N, 1, 32, 32), dtype=np.uint8)
    run.write_array("images", images)
    p1 = np.clip(0.25 + 0.5 * labels + rng.normal(0, 0.2, N), 0.001, 0.999)
    run.write_array("oof/pred_probs", np.c_[1 - p1, p1].astype(np.float32))
    run.write_array("oof/folds", (np.arange(N) % 5).astype(np.int16))
    records = [{"sample_id": ids[i], "patient_key": f"p-{patients[i]:016x}",
                "given_label": "positive", "suggested_label": "negative",
                "label_quality_score": 0.1} for i in range(5000)]
    pairs = [{"sample_id_a": ids[2 * i], "sample_id_b": ids[2 * i + 1], "distance": 0.0,
              "kind": "exact"} for i in range(2000)]
    findings = [
        {"check": "label_issues", "severity": "critical", "title": "Many label issues",
         "message": "Many labels look wrong.", "recommendation": "Review them.",
         "evidence": {"top_issues": records, "n": N}, "sample_ids": ids[:20000],
         "references": ["CLAIM:annotation"]},
        {"check": "duplicates_and_leakage", "severity": "warning", "title": "Duplicates",
         "message": "Duplicate images.", "recommendation": "Remove them.",
         "evidence": {"pairs": pairs}, "sample_ids": ids[:4000], "references": []},
        *({"check": f"new_check_{k}", "severity": "info", "title": f"Check {k}",
           "message": "Something.", "recommendation": "",
           "evidence": {"table": [{"sample_id": ids[j], "score": float(j)}
                                  for j in range(k * 1000, k * 1000 + 3000)]},
           "sample_ids": ids[k * 1000: k * 1000 + 3000], "references": []} for k in range(20)),
    ]
    run.write_json("findings.json", findings)
    run.update_run_json({
        "classes": ["negative", "positive"],
        "ingest": {"source": {"kind": "manifest", "path": "manifest.csv"}, "image_shape": [1, 32, 32],
                   "input_files": {"algorithm": "BLAKE2b-128", "files": {
                       f: f"{i:032x}" for i, f in enumerate(["manifest.csv", *ids])}}},
        "audit": {"checks_run": sorted({f["check"] for f in findings}), "skipped": [],
                  "errors": [], "complete": True}})
    return run


@pytest.mark.slow
def test_html_of_a_100000_image_run_stays_under_15_mb(tmp_path: Path) -> None:
    run = _large_run(tmp_path / "large")
    written = write_reports(run, formats=["html", "json"], options=ReportOptions())
    size = written.paths["html"].stat().st_size
    assert size < LIMIT, f"report.html is {size / 2**20:.1f} MiB"
    html = written.paths["html"].read_text(encoding="utf-8")
    assert html.count("<img") <= ReportOptions().max_thumbnails
    assert "first 25 of 5,000 rows shown" in html
    assert "first 50 of 100,001 files shown" in html
    doc = json.loads(written.paths["json"].read_text(encoding="utf-8"))
    assert doc["content"]["reproducibility"]["input_files"]["n_files"] == N + 1  # all, in JSON
