"""No PHI in any report format: PHI planted in DICOM headers and in a manifest never shows."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.rundir import RunDir
from medaudit.cli import main
from reports.render_pdf import PdfBackendUnavailable, pdf_backend
from tests.dicom_factory import PHI as DICOM_PHI
from tests.dicom_factory import write_dicom
from tests.reports.conftest import add_model_outputs

MANIFEST_PHI = {
    "PatientName": "Qwertyson^Jane",
    "PatientBirthDate": "19610412",
    "AccessionNumber": "ACC7781234",
    "medical_record_number": "MRN99887766",
    "surname": "Fictitiousname",
    "zip": "90210-4411",
}
INSTITUTION = "St Elsewhere General Hospital"


def _has_pdf() -> bool:
    try:
        pdf_backend()
        return True
    except PdfBackendUnavailable:
        return False


def _report_texts(run: Path) -> dict[str, str]:
    texts = {}
    for p in sorted(run.glob("report*")) + sorted((run / "report").glob("*")):
        if p.suffix == ".pdf":
            pypdf = pytest.importorskip("pypdf")
            text = "\n".join(pg.extract_text() for pg in pypdf.PdfReader(str(p)).pages)
            texts[p.name] = text + "\n" + " ".join(text.split())  # words split across lines too
        elif p.is_file():
            texts[p.name] = p.read_text(encoding="utf-8")
    return texts


def _report_everything(out: Path) -> None:
    run = RunDir(out)
    add_model_outputs(run)  # so the model card and the galleries are in the reports too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["audit", str(out)]) == 0
    formats = "html,json,pdf" if _has_pdf() else "html,json"
    assert main(["report", str(out), "--format", formats]) == 0
    assert main(["report", str(out), "--format", "html,json", "--audience", "clinician"]) == 0


def _assert_clean(texts: dict[str, str], values: list[str]) -> None:
    assert {"report.html", "report.json", "clinician.html"} <= set(texts)
    if _has_pdf():
        assert "report.pdf" in texts
    leaked = {name: [v for v in values if v.lower() in t.lower()] for name, t in texts.items()}
    assert all(not v for v in leaked.values()), f"PHI in reports: {leaked}"


def test_phi_in_dicom_headers_never_reaches_a_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "dicom"
    rows = []
    for i in range(24):
        img = np.clip(1500 + rng.normal(0, 200, (32, 32)) + 600 * (i % 2), 0, 4095)
        f = write_dicom(root / f"d{i:02d}.dcm", img, patient_id=f"ZZQPHIID{i // 2}")
        rows.append({"path": f.name, "label": ["normal", "nodule"][i % 2]})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "run"
    assert main(["ingest", "--dicom-dir", str(root), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(out), "--image-size", "16"]) == 0
    _report_everything(out)
    values = [str(v) for v in DICOM_PHI.values()] + ["ZZQPHI", "ZZQACC"] + \
        [f"ZZQPHIID{i}" for i in range(12)]
    _assert_clean(_report_texts(out), values)


def test_phi_in_a_manifest_never_reaches_a_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(24):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["neg", "pos"][i % 2],
                     "patient_id": f"PID-{i // 2:04d}-Qx", "site": INSTITUTION, **MANIFEST_PHI})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "run"
    assert main(["ingest", "--manifest", str(tmp_path / "m.csv"), "--out", str(out),
                 "--image-size", "16"]) == 0
    _report_everything(out)
    texts = _report_texts(out)
    _assert_clean(texts, [*MANIFEST_PHI.values(), INSTITUTION, "PID-0003-Qx"])
    doc = json.loads(texts["report.json"])
    sites = next(t for t in doc["content"]["dataset"]["tables"] if t["title"] == "Images by site")
    assert all(str(r[0]).startswith("site-") for r in sites["rows"])  # pseudonymised keys only
