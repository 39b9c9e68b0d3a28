"""``medaudit ingest`` / ``demo-data``: exit codes, the summary and the refused inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medaudit.cli import main


def _pngs(tmp_path: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["neg", "pos"][i % 2], "patient_id": f"P{i}"})
    rows[1]["label"] = "maybe"
    p = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_ingest_ok_lists_refused_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _pngs(tmp_path)
    code = main(["ingest", "--manifest", str(csv), "--out", str(tmp_path / "run"),
                 "--classes", "neg,pos", "--image-size", "16"])
    out = capsys.readouterr().out
    assert code == 0
    assert "refused 1.png: column 'label' must be a class name in ['neg', 'pos']" in out
    assert "ingested 7 images, refused 1" in out
    assert (tmp_path / "run" / "quarantine.csv").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--manifest", "missing.csv"], "not found"),
        ([], "give exactly one input"),
        (["--dicom-dir", "."], "--dicom-dir needs --labels"),
    ],
)
def test_ingest_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  argv: list[str], message: str) -> None:
    code = main(["ingest", *argv, "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_single_class_manifest_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _pngs(tmp_path)
    pd.read_csv(csv).assign(label="neg").to_csv(csv, index=False)
    assert main(["ingest", "--manifest", str(csv), "--out", str(tmp_path / "run")]) == 2
    assert "only one class" in capsys.readouterr().err


def test_library_parameters_are_worded_as_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _pngs(tmp_path)
    assert main(["ingest", "--manifest", str(csv), "--out", str(tmp_path / "run"), "--image-size", "16"]) == 0
    (tmp_path / "m2.csv").write_text(csv.read_text().replace("P1", "Q1"))
    code = main(["ingest", "--manifest", str(tmp_path / "m2.csv"), "--out", str(tmp_path / "run"),
                 "--image-size", "16"])
    err = capsys.readouterr().err
    assert code == 2
    assert "pass --overwrite" in err and "overwrite=True" not in err
