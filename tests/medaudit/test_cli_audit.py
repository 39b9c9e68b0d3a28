"""``medaudit audit`` and ``medaudit audit-predictions`` through ``medaudit.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.rundir import FINDINGS, RunDir
from medaudit.cli import EXIT_BAD_INPUT, EXIT_OK, main
from medaudit.commands.audit import NO_RUN_DIR

CHEAP = "label_issues,annotator_agreement,class_balance_and_size"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDAUDIT_SECRET", "cli-test-secret-0123456789abcdef0123")


@pytest.fixture
def run_with_preds(tiny_run: RunDir) -> RunDir:
    y = tiny_run.read_manifest()["label"].to_numpy()
    rng = np.random.default_rng(0)
    p1 = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, len(y)), 0.01, 0.99)
    tiny_run.write_array("oof/pred_probs", np.c_[1 - p1, p1].astype(np.float32))
    return tiny_run


def _toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "audit.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_audit_prints_summary_sorted_by_severity(run_with_preds: RunDir, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _toml(tmp_path, "[label_issues]\nn_boot = 50\nmax_listed = 5\n")
    code = main(["audit", str(run_with_preds.path), "--config", str(cfg), "--checks", CHEAP])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["severity", "check", "title", "samples"]
    order = ["critical", "warning", "info", "pass"]
    sev = [line.split()[0] for line in lines[1:] if line.split() and line.split()[0] in order]
    assert sev == sorted(sev, key=order.index) and sev
    assert "skipped annotator_agreement: no manifest column starting with 'label_'" in out
    findings = json.loads(run_with_preds.file(FINDINGS).read_text())
    assert {f["check"] for f in findings} == {"label_issues", "class_balance_and_size"}
    assert run_with_preds.read_run_json()["audit"]["config"]["label_issues"]["max_listed"] == 5


def test_unknown_section_or_setting_exits_2(run_with_preds: RunDir, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _toml(tmp_path, "[label_issue]\nmax_listed = 5\n")
    assert main(["audit", str(run_with_preds.path), "--config", str(cfg)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "unknown checks ['label_issue']" in err and "valid checks: label_issues" in err
    cfg = _toml(tmp_path, "[label_issues]\nmax_listd = 5\n")
    assert main(["audit", str(run_with_preds.path), "--config", str(cfg)]) == EXIT_BAD_INPUT
    assert "valid settings:" in capsys.readouterr().err
    cfg = _toml(tmp_path, "[label_issues]\nfilter_by = 'magic'\n")
    assert main(["audit", str(run_with_preds.path), "--config", str(cfg)]) == EXIT_BAD_INPUT
    assert "must be one of" in capsys.readouterr().err
    assert not run_with_preds.has(FINDINGS)  # nothing ran


def test_unknown_check_and_missing_run_dir_exit_2(run_with_preds: RunDir, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(run_with_preds.path), "--checks", "nope"]) == EXIT_BAD_INPUT
    assert "unknown check 'nope'" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "absent")]) == EXIT_BAD_INPUT
    assert "manifest.parquet" in capsys.readouterr().err
    assert main(["audit"]) == EXIT_BAD_INPUT
    assert NO_RUN_DIR in capsys.readouterr().err


def test_list_shows_checks_and_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--list"]) == EXIT_OK
    out = capsys.readouterr().out
    for name in ("label_issues", "annotator_agreement", "duplicates_and_leakage", "outliers",
                 "class_balance_and_size"):
        assert f"{name}:" in out
    assert "warn_noise_rate=0.05" in out


def test_audit_predictions_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    n = 60
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, n), 0.01, 0.99)
    ids = [f"x{i}" for i in range(n)]
    pd.DataFrame({"sample_id": ids, "label": y}).to_csv(tmp_path / "labels.csv", index=False)
    pd.DataFrame({"sample_id": ids, "0": 1 - p1, "1": p1}).to_csv(tmp_path / "preds.csv",
                                                                  index=False)
    np.save(tmp_path / "emb.npy", rng.normal(0, 1, (n, 4)).astype(np.float32))
    out = tmp_path / "run"
    code = main(["audit-predictions", "--labels", str(tmp_path / "labels.csv"),
                 "--pred-probs", str(tmp_path / "preds.csv"), "--embeddings",
                 str(tmp_path / "emb.npy"), "--out", str(out), "--checks", CHEAP])
    text = capsys.readouterr().out
    assert code == EXIT_OK
    assert f"wrote run directory {out}: {n} samples" in text
    assert (out / FINDINGS).exists()
    assert RunDir(out).read_run_json()["source"] == "external"


def test_audit_predictions_bad_input_exits_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame({"sample_id": ["a", "b"], "label": [0, 1]}).to_csv(tmp_path / "l.csv",
                                                                   index=False)
    pd.DataFrame({"sample_id": ["a", "b"], "0": [0.7, 0.7], "1": [0.7, 0.3]}).to_csv(
        tmp_path / "p.csv", index=False)
    code = main(["audit-predictions", "--labels", str(tmp_path / "l.csv"), "--pred-probs",
                 str(tmp_path / "p.csv"), "--out", str(tmp_path / "run")])
    assert code == EXIT_BAD_INPUT
    assert "row 0 ('a') sums to 1.4" in capsys.readouterr().err
    assert not (tmp_path / "run" / "manifest.parquet").exists()
