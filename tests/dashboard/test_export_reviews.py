"""``medaudit export-reviews``: decisions CSV, trail, and a new manifest that ingests again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.consistency import data_fingerprint
from audit.reviews import ReviewStore, pair_key
from audit.rundir import RunDir
from medaudit.cli import main


def _manifest(folder: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(
            folder / "img" / f"{i}.png"
        )
        rows.append(
            {
                "path": f"img/{i}.png",
                "label": ["neg", "pos"][i % 2],
                "patient_id": f"P{i // 2}",
                "site": ["north", "south"][i % 3 == 0],
                "age": 40 + i,
            }
        )
    csv = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def test_export_then_ingest_the_corrected_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _manifest(tmp_path / "data")
    run_dir = tmp_path / "run"
    assert main(["ingest", "--manifest", str(csv), "--out", str(run_dir)]) == 0
    run = RunDir(run_dir)
    m = run.read_manifest()
    before = (run_dir / "manifest.parquet").read_bytes()
    sid = m["sample_id"].astype(str).tolist()
    store = ReviewStore(run_dir, data_fingerprint(run))
    # row 2 (neg) is confirmed as pos; row 3 first confirmed then kept (latest decision wins)
    store.record("label_issue", sid[2], "confirm_error", reviewer="Dr A", corrected_label="pos")
    store.record("label_issue", sid[3], "confirm_error", reviewer="Dr A", corrected_label="neg")
    store.record("label_issue", sid[3], "keep_label", reviewer="Dr B", note="fine on review")
    # rows 4 and 8 (patients P2 and P4) are the same patient; 0 and 10 are not duplicates
    store.record("duplicate", pair_key(sid[8], sid[4]), "same_patient", reviewer="Dr A")
    store.record("duplicate", pair_key(sid[0], sid[10]), "not_duplicate", reviewer="Dr A")
    ReviewStore(run_dir, "ffffffffffffffff").record(
        "label_issue", sid[5], "confirm_error", reviewer="old", corrected_label="neg"
    )

    out = tmp_path / "export"
    assert main(["export-reviews", str(run_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 decision(s); 1 label(s) corrected; 1 patient merge(s)" in printed
    assert (run_dir / "manifest.parquet").read_bytes() == before  # never rewritten
    dec = pd.read_csv(out / "review_decisions.csv")
    assert len(dec) == 4 and set(dec["reviewer"]) == {"Dr A", "Dr B"}
    assert dec.loc[dec["sample_id"] == sid[3], "previous_decision"].item() == "confirm_error"
    assert len(pd.read_csv(out / "review_trail.csv")) == 5  # the other data's row left out

    new_run = tmp_path / "run2"
    assert (
        main(["ingest", "--manifest", str(out / "corrected_manifest.csv"), "--out", str(new_run)])
        == 0
    )
    m2 = RunDir(new_run).read_manifest().set_index("sample_id")
    m1 = m.set_index("sample_id")
    assert m2.loc[sid[2], "label_name"] == "pos" and m1.loc[sid[2], "label_name"] == "neg"
    for s in (sid[3], sid[5], sid[0]):
        assert m2.loc[s, "label_name"] == m1.loc[s, "label_name"]
    # the merged patients share one key; the others keep theirs apart
    assert m2.loc[sid[4], "patient_key"] == m2.loc[sid[8], "patient_key"]
    assert m2.loc[sid[0], "patient_key"] != m2.loc[sid[10], "patient_key"]
    assert m2["patient_key"].nunique() == m1["patient_key"].nunique() - 1
    assert m2["age"].tolist() == m1.loc[m2.index, "age"].tolist()


def test_export_refuses_the_run_directory_and_overwrites_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _manifest(tmp_path / "data", n=6)
    run_dir = tmp_path / "run"
    assert main(["ingest", "--manifest", str(csv), "--out", str(run_dir)]) == 0
    assert main(["export-reviews", str(run_dir), "--out", str(run_dir / "sub")]) == 2
    assert "inside the run directory" in capsys.readouterr().err
    out = tmp_path / "exp"
    assert main(["export-reviews", str(run_dir), "--out", str(out)]) == 0
    assert main(["export-reviews", str(run_dir), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export-reviews", str(run_dir), "--out", str(out), "--overwrite"]) == 0


def test_dashboard_command_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboard", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["dashboard", str(tmp_path), "--data-root", str(tmp_path / "nope")]) == 2
    assert main(["dashboard", str(tmp_path), "--port", "0"]) == 2


def test_streamlit_command_is_local_headless_and_without_statistics() -> None:
    from medaudit.commands.dashboard import streamlit_command

    cmd = streamlit_command(Path("app.py"), host="127.0.0.1", port=8765)
    flags = dict(zip(cmd[5::2], cmd[6::2]))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8765"
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"


def test_dashboard_command_binds_locally_and_warns_for_other_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    calls: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    data = tmp_path / "data"
    data.mkdir()
    assert main(["dashboard", str(tmp_path), "--data-root", str(data)]) == 0
    cmd, env = calls[-1]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert env["MEDAUDIT_DASHBOARD_RUNS"] == str(tmp_path.resolve())
    assert env["MEDAUDIT_DASHBOARD_DATA_ROOT"] == str(data.resolve())
    assert "warning" not in capsys.readouterr().err
    assert main(["dashboard", str(tmp_path), "--host", "0.0.0.0", "--port", "8600"]) == 0
    cmd, env = calls[-1]
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert "MEDAUDIT_DASHBOARD_DATA_ROOT" not in env
    assert "reachable from other machines" in capsys.readouterr().err
