"""The report model: sections per audience, every check in the summary, generic findings."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from audit.registry import list_checks
from audit.rundir import RunDir
from reports import SECTIONS_FOR, ReportOptions, build_report
from reports.canonical import content_sha256, normalize
from reports.evidence import evidence_view
from reports.model_card import NOT_EVALUATED
from reports.regulatory import ITEMS


@pytest.mark.parametrize("audience", ["all", "clinician", "reviewer", "regulatory"])
def test_each_audience_gets_its_sections_in_reading_order(audited_run: RunDir, audience: str) -> None:
    content = build_report(audited_run, ReportOptions(audience=audience)).to_dict()
    assert content["sections"] == list(SECTIONS_FOR[audience])
    present = [s for s in ("summary", "dataset", "model", "findings", "regulatory",
                           "reproducibility") if s in content]
    assert sorted(present) == sorted(SECTIONS_FOR[audience])
    if audience == "clinician":
        assert "findings" not in content and "regulatory" not in content
    if audience == "regulatory":
        assert content["sections"][:2] == ["summary", "regulatory"]


def test_summary_lists_every_check_including_skipped_and_failed(audited_run: RunDir) -> None:
    info = audited_run.read_run_json()
    info["audit"]["errors"] = [{"check": "outliers", "error": "RuntimeError: planted"}]
    info["audit"]["checks_run"] = [c for c in info["audit"]["checks_run"] if c != "outliers"]
    info["audit"]["complete"] = False
    audited_run.update_run_json({"audit": info["audit"]})
    summary = build_report(audited_run, ReportOptions(audience="clinician")).summary
    assert summary is not None
    status = {r.check: r.status for r in summary.checks}
    assert set(list_checks()) <= set(status)
    assert status["annotator_agreement"] == "skipped"  # the tiny run has no annotator columns
    assert status["outliers"] == "failed"
    assert status["class_balance_and_size"] == "warning"
    assert summary.complete is False and "incomplete" in summary.verdict
    skipped = next(r for r in summary.checks if r.check == "annotator_agreement")
    assert "label_" in skipped.meaning and skipped.action
    order = [r.status for r in summary.checks]
    assert order.index("failed") < order.index("warning") < order.index("skipped")


def test_a_finding_of_an_unknown_check_is_rendered_without_code_changes(
        audited_run: RunDir, add_finding: Callable[[RunDir, dict], None]) -> None:
    ids = audited_run.read_manifest()["sample_id"].tolist()
    add_finding(audited_run, {
        "check": "brand_new_check", "severity": "critical", "title": "Something new",
        "message": "A new problem. It matters.", "recommendation": "Do the new thing.",
        "evidence": {"score": {"estimate": 0.4, "ci_low": 0.3, "ci_high": 0.5, "level": 0.95,
                               "method": "new method"}, "n": 12,
                     "extremes": [{"sample_id": ids[0], "value": 1.5},
                                  {"sample_id": ids[1], "value": 1.2}]},
        "sample_ids": ids[:2], "references": ["GMLP-3"]})
    report = build_report(audited_run)
    row = next(r for r in report.summary.checks if r.check == "brand_new_check")
    assert row.status == "critical" and row.meaning == "A new problem. It matters."
    view = next(f for f in report.findings.findings if f.check == "brand_new_check")
    assert view.galleries and view.galleries[0].groups[0][0].sample_id == ids[0]
    assert "value 1.5" in view.galleries[0].captions[0]
    ev = evidence_view(view.evidence)
    assert ("n", 12) in ev.scalars and ev.tables[0].title == "extremes"
    gmlp3 = next(i for i in report.regulatory.items if i.key == "GMLP-3")
    assert any(e["anchor"] == f"#{view.id}" for e in gmlp3.evidence)


def test_model_card_says_what_was_not_evaluated_and_uses_checks_when_present(
        audited_run: RunDir, add_finding: Callable[[RunDir, dict], None]) -> None:
    card = build_report(audited_run).model
    assert card.kind == "trained"
    status = {e["check"]: e["status"] for e in card.evaluated}
    assert status["subgroup_performance"] == "evaluated"  # the subgroup check ran
    assert status["calibration"] == NOT_EVALUATED
    assert card.prevalences["class_1"]["deployment"] is None
    (op,) = card.operating_points
    assert op["class_name"] == "class_1" and op["method"] == "youden"
    assert set(op["sensitivity"]) == {"estimate", "ci_low", "ci_high", "level", "method"}
    rel = next(f for f in card.figures if f.kind == "reliability")
    assert rel.data["source"].startswith("computed by the report")

    add_finding(audited_run, {
        "check": "calibration", "severity": "warning", "title": "Overconfident",
        "message": "The model is overconfident.", "recommendation": "Recalibrate.",
        "evidence": {"ece": 0.12, "reliability": [
            {"mean_predicted": 0.1, "observed": 0.2, "n": 40},
            {"mean_predicted": 0.9, "observed": 0.7, "n": 40}]},
        "sample_ids": [], "references": []})
    add_finding(audited_run, {
        "check": "prevalence_shift", "severity": "info", "title": "PPV at 5%",
        "message": "At 5% prevalence most positive calls are false alarms.",
        "evidence": {"deployment_prevalence": 0.05}, "sample_ids": [], "references": []})
    card = build_report(audited_run).model
    status = {e["check"]: e for e in card.evaluated}
    assert status["calibration"]["status"] == "evaluated" and status["calibration"]["finding_ids"]
    rel = next(f for f in card.figures if f.kind == "reliability")
    assert rel.data["source"].startswith("calibration finding")
    assert card.prevalences["class_1"]["deployment"] == 0.05
    pv = next(t for t in card.tables if t.title.startswith("Predictive values"))
    dep = next(r for r in pv.rows if r[1] == "deployment")
    assert dep[2] == 0.05 and dep[3]["estimate"] is not None


def test_regulatory_mapping_never_claims_compliance(audited_run: RunDir) -> None:
    reg = build_report(audited_run, ReportOptions(audience="regulatory")).regulatory
    assert "not a statement of compliance" in reg.disclaimer
    assert {i.key for i in reg.items} == {i.key for i in ITEMS}
    assert sum(reg.counts.values()) == len(ITEMS)
    by_key = {i.key: i for i in reg.items}
    assert by_key["GMLP-4"].status == "evidenced"  # folds + duplicates check
    assert by_key["TRIPOD+AI:fairness"].status == "evidenced"  # the subgroup check ran
    assert by_key["GMLP-3"].status == "partially evidenced"  # needs the intended population
    text = json.dumps(normalize(build_report(
        audited_run, ReportOptions(audience="regulatory")).to_dict()["regulatory"]))
    assert "complies" not in text and "compliant" not in text


def test_content_is_deterministic(audited_run: RunDir) -> None:
    a = normalize(build_report(audited_run).to_dict())
    b = normalize(build_report(audited_run).to_dict())
    assert content_sha256(a) == content_sha256(b)


def test_reproducibility_lists_every_input_file_and_no_paths(audited_run: RunDir) -> None:
    rep = build_report(audited_run).reproducibility
    assert rep.input_files["n_files"] == 161 and rep.input_files["algorithm"] == "BLAKE2b-128"
    assert len(rep.input_files["list_sha256"]) == 64
    names = {a["name"] for a in rep.artifacts}
    assert {"manifest.parquet", "images.npy", "findings.json", "oof/pred_probs.npy"} <= names
    text = json.dumps(normalize(build_report(audited_run).to_dict()))
    assert "/secret/place" not in text  # folders are never shown, file names only


def test_an_unaudited_run_reports_every_check_as_not_run(tmp_path) -> None:
    from tests.conftest import build_tiny_run

    run = build_tiny_run(tmp_path / "raw")
    report = build_report(run)
    assert report.summary.audited is False
    assert {r.status for r in report.summary.checks} == {"not_run"}
    assert report.model.kind == "none" and report.findings.findings == []


def test_only_some_sections_are_built_when_asked(audited_run: RunDir) -> None:
    light = build_report(audited_run, ReportOptions(), only=("dataset", "findings"))
    full = build_report(audited_run, ReportOptions())
    assert light.sections == ["summary", "dataset", "findings"]
    assert light.model is None and light.regulatory is None and light.reproducibility is None
    assert light.summary == full.summary and light.dataset == full.dataset
    assert [f.id for f in light.findings.findings] == [f.id for f in full.findings.findings]
    with pytest.raises(ValueError, match="not in the 'clinician' audience"):
        build_report(audited_run, ReportOptions(audience="clinician"), only=("findings",))
