"""medaudit verify: an untouched report matches; a changed number or hash is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.rundir import RunDir
from medaudit.cli import EXIT_BAD_INPUT, EXIT_OK, main
from medaudit.exit_codes import EXIT_REPORT_MISMATCH
from reports import ReportOptions, verify_report, write_reports
from reports.verify import first_difference


@pytest.fixture
def reported(audited_run: RunDir) -> tuple[RunDir, Path]:
    written = write_reports(audited_run, formats=["json"],
                            options=ReportOptions(audience="reviewer"))
    return audited_run, written.paths["json"]


def test_untouched_report_matches(reported: tuple[RunDir, Path], capsys) -> None:
    run, path = reported
    result = verify_report(run, path)
    assert result.ok and result.field is None
    assert main(["verify", str(run.path), str(path)]) == EXIT_OK
    assert capsys.readouterr().out.startswith("OK: report matches the run directory")


def test_a_changed_number_is_named(reported: tuple[RunDir, Path], capsys) -> None:
    run, path = reported
    doc = json.loads(path.read_text(encoding="utf-8"))
    table = next(i for i, t in enumerate(doc["content"]["model"]["tables"])
                 if t["title"].startswith("Performance"))
    doc["content"]["model"]["tables"][table]["rows"][0][1]["estimate"] = 0.99
    path.write_text(json.dumps(doc), encoding="utf-8")
    result = verify_report(run, path)
    field = f"content.model.tables[{table}].rows[0][1].estimate"
    assert not result.ok and result.field == field
    assert "the report has 0.99, the run gives 0.81" in result.message
    assert main(["verify", str(run.path), str(path)]) == EXIT_REPORT_MISMATCH
    assert field in capsys.readouterr().out


def test_an_edited_hash_is_caught(reported: tuple[RunDir, Path]) -> None:
    run, path = reported
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["content_sha256"] = "0" * 64
    path.write_text(json.dumps(doc), encoding="utf-8")
    result = verify_report(run, path)
    assert not result.ok and result.field == "content_sha256"


def test_a_changed_run_is_caught(reported: tuple[RunDir, Path]) -> None:
    run, path = reported
    findings = json.loads(run.file("findings.json").read_text())
    findings[0]["title"] = "edited"
    run.write_json("findings.json", findings)
    result = verify_report(run, path)
    assert not result.ok and result.field is not None and result.field.startswith("content.")


def test_not_a_report_is_bad_input(audited_run: RunDir, tmp_path: Path, capsys) -> None:
    other = tmp_path / "x.json"
    other.write_text('{"format": "something else"}')
    assert main(["verify", str(audited_run.path), str(other)]) == EXIT_BAD_INPUT
    assert "is not a medaudit report.json" in capsys.readouterr().err


def test_first_difference_walks_in_document_order() -> None:
    a = {"x": 1, "y": [1, 2, {"z": "a"}]}
    assert first_difference(a, a) is None
    assert first_difference({"x": 1, "y": [1, 2, {"z": "b"}]}, a) == ("y[2].z", "b", "a")
    assert first_difference({"x": 1.0, "y": [1, 2, {"z": "a"}]}, a) is None
    assert first_difference({"x": 1, "y": [1, 2]}, a)[0] == "y[2]"
