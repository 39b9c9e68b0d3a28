"""Planted PHI never reaches an output file, whichever way the data enters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medaudit.cli import main

PHI = {
    "PatientName": "Doe^Jane",
    "PatientBirthDate": "19610412",
    "StudyDate": "20230117",
    "AccessionNumber": "ACC7781234",
    "InstitutionAddress": "12 Harbour Road Springfield",
    "ReferringPhysicianName": "Dr Hibbert",
    "medical_record_number": "MRN99887766",
    "surname": "Fictitiousname",
    "zip": "90210-4411",
}
INSTITUTION = "St Elsewhere General Hospital"


def output_text(run_dir: Path) -> str:
    """Every output file of a run directory as text (parquet decoded, arrays skipped)."""
    parts = []
    for p in sorted(run_dir.rglob("*")):
        if not p.is_file() or p.suffix in (".npy", ".pt"):
            continue
        if p.suffix == ".parquet":
            parts.append(pd.read_parquet(p).to_csv())
        else:
            parts.append(p.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


def _assert_no_phi(run_dir: Path, values: list[str]) -> None:
    text = output_text(run_dir)
    leaked = [v for v in values if v in text]
    assert leaked == [], f"PHI in outputs of {run_dir}: {leaked}"


def test_manifest_identifier_columns_never_reach_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["neg", "pos"][i % 2],
                     "patient_id": f"PID-{i:04d}", "site": INSTITUTION, **PHI})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "run"
    assert main(["ingest", "--manifest", str(tmp_path / "m.csv"), "--out", str(out),
                 "--image-size", "16"]) == 0
    printed = capsys.readouterr().out
    for column in PHI:
        assert f"column {column!r} looks like a direct identifier" in printed
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert not set(PHI) & set(manifest.columns)
    assert manifest["site"].str.startswith("site-").all()
    _assert_no_phi(out, [*PHI.values(), INSTITUTION, "PID-0003"])


def test_audit_predictions_hashes_site_and_drops_identifier_metadata(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 30
    ids = [f"img{i:03d}" for i in range(n)]
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, n), 0.01, 0.99)
    pd.DataFrame({"sample_id": ids, "label": y, "patient_id": [f"PID-{i // 2:04d}" for i in range(n)],
                  "site": INSTITUTION}).to_csv(tmp_path / "labels.csv", index=False)
    pd.DataFrame({"sample_id": ids, "0": 1 - p1, "1": p1}).to_csv(tmp_path / "p.csv", index=False)
    pd.DataFrame({"sample_id": ids, "patient_name": "Doe^Jane", "study_date": "20230117",
                  "age": rng.uniform(40, 80, n).round(1)}).to_csv(tmp_path / "meta.csv", index=False)
    out = tmp_path / "ext"
    code = main(["audit-predictions", "--labels", str(tmp_path / "labels.csv"), "--pred-probs",
                 str(tmp_path / "p.csv"), "--metadata", str(tmp_path / "meta.csv"),
                 "--out", str(out), "--checks", "label_issues,class_balance_and_size"])
    assert code == 0
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert {"patient_name", "study_date"}.isdisjoint(manifest.columns)
    assert "age" in manifest.columns
    assert manifest["site"].str.startswith("site-").all()
    _assert_no_phi(out, ["Doe^Jane", "20230117", INSTITUTION, "PID-0003"])
