"""medaudit report / run end with reports / audit --fail-on exit codes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.findings import Finding
from audit.rundir import RunDir
from medaudit.cli import (
    EXIT_AUDIT_INCOMPLETE,
    EXIT_BAD_INPUT,
    EXIT_FINDINGS_AT_FAIL_ON,
    EXIT_OK,
    main,
)
from medaudit.commands.audit import audit_exit_code
from tests.reports.conftest import build_audited_run


@pytest.fixture
def audited(tmp_path: Path) -> RunDir:
    return build_audited_run(tmp_path / "run")


def test_report_for_one_audience_is_a_transaction_of_the_run(audited: RunDir, capsys) -> None:
    code = main(["report", str(audited.path), "--format", "html,json", "--audience", "reviewer"])
    assert code == EXIT_OK
    out = capsys.readouterr().out
    html, js = audited.path / "report" / "reviewer.html", audited.path / "report" / "reviewer.json"
    assert f"report (html): {html}" in out and f"report (json): {js}" in out
    outputs = audited.read_run_json()["report"]["outputs"]
    assert set(outputs) == {"report/reviewer.html", "report/reviewer.json"}
    assert outputs["report/reviewer.json"]["content_sha256"] == json.loads(js.read_text())[
        "content_sha256"]
    assert not (audited.path / ".staging").exists()


def test_report_out_elsewhere_leaves_the_run_alone(audited: RunDir, tmp_path: Path) -> None:
    before = audited.file("run.json").read_bytes()
    assert main(["report", str(audited.path), "--format", "json", "--out",
                 str(tmp_path / "elsewhere")]) == EXIT_OK
    assert (tmp_path / "elsewhere" / "report.json").is_file()
    assert audited.file("run.json").read_bytes() == before
    assert not (audited.path / "report.json").exists()


def test_a_new_audit_removes_reports_of_old_findings(audited: RunDir) -> None:
    assert main(["report", str(audited.path), "--format", "json"]) == EXIT_OK
    assert (audited.path / "report.json").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["audit", str(audited.path), "--checks", "class_balance_and_size"]) == EXIT_OK
    assert not (audited.path / "report.json").exists()
    assert "report" not in audited.read_run_json()


def test_bad_report_input_is_one_line_exit_2(audited: RunDir, tmp_path: Path, capsys) -> None:
    assert main(["report", str(audited.path), "--format", "docx"]) == EXIT_BAD_INPUT
    assert "unknown report format 'docx'; valid formats: html, json, pdf" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == EXIT_BAD_INPUT
    assert "is not an ingested run directory" in capsys.readouterr().err


def test_run_ends_by_writing_the_reports(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["neg", "pos"][i % 2], "patient_id": f"P{i}"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "r"),
                     "--image-size", "16", "--no-train"]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"report (html): {tmp_path / 'r' / 'report.html'}" in out
    assert f"report (json): {tmp_path / 'r' / 'report.json'}" in out
    assert main(["verify", str(tmp_path / "r"), str(tmp_path / "r" / "report.json")]) == EXIT_OK
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "r2"),
                     "--image-size", "16", "--no-train", "--no-report"]) == EXIT_OK
    assert not (tmp_path / "r2" / "report.html").exists()


def _finding(severity: str) -> Finding:
    return Finding(check="x", severity=severity, title="t", message="m")  # type: ignore[arg-type]


@pytest.mark.parametrize(("severities", "fail_on", "errors", "expected"), [
    (["warning"], None, [], EXIT_OK),
    (["warning"], "warning", [], EXIT_FINDINGS_AT_FAIL_ON),
    (["warning"], "critical", [], EXIT_OK),
    (["critical"], "critical", [], EXIT_FINDINGS_AT_FAIL_ON),
    (["critical"], "warning", [], EXIT_FINDINGS_AT_FAIL_ON),
    (["info", "pass"], "warning", [], EXIT_OK),
    (["critical"], "critical", [{"check": "x", "error": "boom"}], EXIT_AUDIT_INCOMPLETE),
])
def test_fail_on_exit_codes(severities: list[str], fail_on: str | None, errors: list,
                            expected: int) -> None:
    result = SimpleNamespace(findings=[_finding(s) for s in severities], errors=errors)
    assert audit_exit_code(result, fail_on) == expected
    assert (EXIT_FINDINGS_AT_FAIL_ON, EXIT_AUDIT_INCOMPLETE) == (3, 4)


def test_fail_on_through_the_command_line(audited: RunDir) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the synthetic run has warnings (class sizes) and no critical finding
        args = ["audit", str(audited.path), "--checks", "class_balance_and_size"]
        assert main([*args, "--fail-on", "warning"]) == EXIT_FINDINGS_AT_FAIL_ON
        assert main([*args, "--fail-on", "critical"]) == EXIT_OK
