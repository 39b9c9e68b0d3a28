"""``--deployment-prevalence``: reaches prevalence_shift, is stored in run.json and reused."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

import medaudit
from audit.rundir import FINDINGS, RunDir
from medaudit.cli import main

SECRET = "x" * 40


def _run(tmp_path: Path, n: int = 400) -> Path:
    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.3).astype(int)
    s = rng.normal(0, 1, n) + 1.8 * y
    p = 1 / (1 + np.exp(-(1.8 * s - 1.62 + np.log(0.3 / 0.7))))
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        medaudit.audit_predictions(y, np.column_stack([1 - p, p]), class_names=["benign", "cancer"],
                                   patient_ids=[f"P{i}" for i in range(n)], checks=["calibration"],
                                   config={"calibration": {"n_boot": 20}}, out=out)
    return out


def _prevalence_finding(run: Path) -> dict:
    findings = json.loads(RunDir(run).file(FINDINGS).read_text())
    return next(f for f in findings if f["check"] == "prevalence_shift")


def test_flag_is_used_stored_and_reused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDAUDIT_SECRET", SECRET)
    run = _run(tmp_path)
    cfg = tmp_path / "fast.toml"
    cfg.write_text('[prevalence_shift]\nn_boot = 20\ncalibrator = "temperature"\n')
    args = ["audit", str(run), "--checks", "prevalence_shift", "--config", str(cfg)]
    assert main([*args, "--deployment-prevalence", "0.05"]) == 0
    f = _prevalence_finding(run)
    assert f["evidence"]["deployment_prevalence"] == [0.95, 0.05]
    assert f["evidence"]["deployment_prevalence_source"] == "stated"
    info = RunDir(run).read_run_json()
    assert info["deployment"]["prevalence"] == 0.05
    assert info["deployment"]["source"] == "--deployment-prevalence"
    # a later audit without the flag uses the stored value
    assert main(args) == 0
    assert _prevalence_finding(run)["evidence"]["deployment_prevalence"] == [0.95, 0.05]
    # the TOML setting works too, and a wrong value is one clear line, exit 2
    cfg.write_text('[prevalence_shift]\nn_boot = 20\ncalibrator = "temperature"\n'
                   "deployment_prevalence = 0.1\n")
    assert main(args) == 0
    assert RunDir(run).read_run_json()["deployment"]["prevalence"] == 0.1
    assert main([*args[:4], "--deployment-prevalence", "1.5"]) == 2
