"""Every page renders (AppTest) on the demo-like run, external predictions and a run with no findings.

The review buttons write the expected rows into ``reviews.sqlite``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from audit.consistency import data_fingerprint
from audit.reviews import ReviewStore, pair_key
from audit.rundir import RunDir
from dashboard.state import ENV_DATA_ROOT, ENV_RUNS
from dashboard.views import PAGES
from tests.dashboard.conftest import DUP_A, DUP_B

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGE_KEYS = [k for k, _, _ in PAGES]


def _app(
    monkeypatch: pytest.MonkeyPatch,
    runs: Path,
    *,
    run: str | None = None,
    page: str = "overview",
    data_root: Path | None = None,
) -> AppTest:
    monkeypatch.setenv(ENV_RUNS, str(runs))
    if data_root is None:
        monkeypatch.delenv(ENV_DATA_ROOT, raising=False)
    else:
        monkeypatch.setenv(ENV_DATA_ROOT, str(data_root))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["page"] = page
    if run is not None:
        at.query_params["run"] = run
    return at.run()


def _text(at: AppTest) -> str:
    parts = []
    for kind in (
        "markdown",
        "caption",
        "info",
        "warning",
        "error",
        "success",
        "header",
        "subheader",
        "metric",
    ):
        for el in getattr(at, kind):
            parts.append(str(getattr(el, "value", "")) + " " + str(getattr(el, "label", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("run", ["demo", "external", "empty"])
def test_every_page_renders(monkeypatch: pytest.MonkeyPatch, runs_folder: Path, run: str) -> None:
    at = _app(monkeypatch, runs_folder, run=run)
    assert not at.exception, at.exception
    for page in PAGE_KEYS:
        at.sidebar.radio(key="page").set_value(page).run()
        assert not at.exception, (page, at.exception)
        assert at.session_state["run"] == run
        assert at.header, page


def test_pages_without_evidence_say_what_to_run(
    monkeypatch: pytest.MonkeyPatch, runs_folder: Path
) -> None:
    at = _app(monkeypatch, runs_folder, run="empty", page="label_issues")
    assert "medaudit" in at.info[0].value and "train" in at.info[0].value
    for page, words in [
        ("shortcuts", "medaudit audit"),
        ("subgroups", "medaudit audit"),
        ("calibration", "medaudit train"),
        ("duplicates", "medaudit audit"),
        ("overfitting", "medaudit train"),
        ("new_audit", "--data-root"),
        ("overview", "No check was evaluated in this audit"),
    ]:
        at.sidebar.radio(key="page").set_value(page).run()
        assert words in _text(at), page


def test_overview_shows_every_check_and_metrics(
    monkeypatch: pytest.MonkeyPatch, runs_folder: Path
) -> None:
    at = _app(monkeypatch, runs_folder, run="demo")
    table = next(m.value for m in at.markdown if m.value.startswith("| status | check |"))
    for check in ("label_issues", "duplicates_and_leakage", "outliers", "annotator_agreement"):
        assert f"`{check}`" in table
    # the status in words on a coloured badge: colour is never the only cue
    assert ":red-badge[act before use]" in table and ":gray-badge[not evaluated]" in table
    labels = {m.label: m.value for m in at.metric}
    assert labels["Images"] == "160" and labels["Out-of-fold AUC"] == "0.810"
    assert "**Reliability of its probabilities**" in _text(at)


def test_label_issue_review_button_writes_the_row(
    monkeypatch: pytest.MonkeyPatch, runs_folder: Path
) -> None:
    at = _app(monkeypatch, runs_folder, run="demo", page="label_issues")
    assert not at.exception
    confirm = [b for b in at.button if b.label == "Confirm error"]
    assert confirm, "no label issue shown"
    confirm[0].click().run()  # no reviewer name yet: nothing written, a warning says why
    assert any("Enter your name" in w.value for w in at.warning)
    run = RunDir(runs_folder / "demo")
    store = ReviewStore(run.path, data_fingerprint(run))
    assert store.trail().empty
    at.sidebar.text_input(key="reviewer").input("Dr Test").run()
    note = at.text_input[0]
    note.input("looks benign to me").run()
    next(b for b in at.button if b.label == "Confirm error").click().run()
    assert not at.exception
    trail = store.trail()
    assert len(trail) == 1
    row = trail.iloc[0]
    assert (row["kind"], row["decision"], row["reviewer"]) == (
        "label_issue",
        "confirm_error",
        "Dr Test",
    )
    assert row["note"] == "looks benign to me" and row["previous_decision"] is None
    assert row["corrected_label"] in ("class_0", "class_1")
    assert row["data_fingerprint"] == data_fingerprint(run)
    # the shown card's sample is the most suspicious one of the check's full table
    assert any("Recorded" in s.value and row["item"] in s.value for s in at.success)
    next(b for b in at.button if b.label == "Keep label").click().run()
    trail = store.trail()
    assert list(trail["decision"]) == ["confirm_error", "keep_label"]
    assert trail["previous_decision"].iloc[1] == "confirm_error"


def test_label_issue_filters_and_pages(monkeypatch: pytest.MonkeyPatch, runs_folder: Path) -> None:
    at = _app(monkeypatch, runs_folder, run="demo", page="label_issues")
    shown = len([b for b in at.button if b.label == "Unsure"])
    at.toggle(key="li-flagged").set_value(False).run()
    assert len([b for b in at.button if b.label == "Unsure"]) == 12  # every image, 12 per page
    assert "of 160" in _text(at)
    at.number_input(key="li-page").set_value(2).run()
    assert "Showing 13–24" in _text(at)
    at.slider(key="li-score").set_value((0.99, 1.0)).run()
    assert not at.exception
    assert shown >= 1


def test_duplicate_pair_review(monkeypatch: pytest.MonkeyPatch, runs_folder: Path) -> None:
    at = _app(monkeypatch, runs_folder, run="demo", page="duplicates")
    assert not at.exception
    run = RunDir(runs_folder / "demo")
    ids = run.read_manifest()["sample_id"].astype(str)
    assert ids[DUP_A] in _text(at) and ids[DUP_B] in _text(at)
    at.sidebar.text_input(key="reviewer").input("Dr Dup").run()
    next(b for b in at.button if b.label == "Same patient").click().run()
    trail = ReviewStore(run.path, data_fingerprint(run)).trail("duplicate")
    assert len(trail) == 1 and trail["decision"].item() == "same_patient"
    assert trail["item"].item() == pair_key(ids[DUP_A], ids[DUP_B])


def test_calibration_controls_use_the_audit_functions(
    monkeypatch: pytest.MonkeyPatch, runs_folder: Path
) -> None:
    import numpy as np

    from audit.operating_point import metrics_at_threshold, predictive_values

    at = _app(monkeypatch, runs_folder, run="demo", page="calibration")
    at.slider(key="cal-threshold").set_value(0.5).run()
    at.slider(key="cal-prevalence").set_value(10.0).run()
    assert not at.exception
    run = RunDir(runs_folder / "demo")
    m = run.read_manifest()
    p = run.read_array("oof/pred_probs").astype(np.float64)
    sens, spec = metrics_at_threshold(
        m["label"].to_numpy(), p, 0.5, groups=m["patient_key"].to_numpy(), n_boot=300
    )
    ppv, npv = predictive_values(sens.estimate, spec.estimate, 0.10)
    metrics = {x.label: x.value for x in at.metric}

    def share(label: str) -> float:
        assert metrics[label].endswith("%")
        return float(metrics[label][:-1]) / 100

    assert share("Sensitivity") == pytest.approx(sens.estimate, abs=6e-4)
    assert share("Specificity") == pytest.approx(spec.estimate, abs=6e-4)
    assert share("PPV") == pytest.approx(ppv, abs=6e-4)
    assert share("NPV") == pytest.approx(npv, abs=6e-4)
    fa = (1 - spec.estimate) * 0.9 * 1000
    assert float(metrics["False alarms per 1,000"]) == pytest.approx(fa, abs=0.1)
    assert "this run states no deployment prevalence" in _text(at)


def test_crafted_run_name_in_the_url_opens_nothing_else(
    monkeypatch: pytest.MonkeyPatch, runs_folder: Path, tmp_path: Path
) -> None:
    at = _app(monkeypatch, runs_folder, run="../../etc")
    assert not at.exception
    assert any("not one of the runs" in w.value for w in at.warning)
    assert at.session_state["run"] in {"demo", "empty", "external"}
    at = _app(monkeypatch, runs_folder, page="../../../etc/passwd")
    assert not at.exception and at.session_state["page"] == "overview"


def test_new_audit_page_lists_only_the_data_root(
    monkeypatch: pytest.MonkeyPatch, runs_folder: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "dicom").mkdir(parents=True)
    (data / "manifest.csv").write_text("path,label\n")
    (tmp_path / "outside.csv").write_text("path,label\n")
    at = _app(monkeypatch, runs_folder, page="new_audit", data_root=data)
    assert not at.exception
    assert at.selectbox(key="new-manifest").options == ["manifest.csv"]
    at.radio(key="new-kind").set_value("DICOM folder and labels CSV").run()
    assert at.selectbox(key="new-dicom").options == ["dicom"]
    at.text_input(key="new-name").input("../escape").run()
    at.selectbox(key="new-dicom").set_value("dicom")
    at.selectbox(key="new-labels").set_value("manifest.csv")
    at.button(key="new-start").click().run()
    assert any("run name" in e.value for e in at.error)
    assert not (tmp_path / "escape").exists() and not (runs_folder.parent / "escape").exists()


def test_an_inconsistent_run_is_explained_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, runs_folder: Path
) -> None:
    import numpy as np

    probs = runs_folder / "demo" / "oof" / "pred_probs.npy"
    p = np.load(probs)
    np.save(probs, p[:, ::-1].copy())  # edited by hand: no longer what training recorded
    at = _app(monkeypatch, runs_folder, run="demo", page="overview")
    assert not at.exception
    assert any("cannot be shown as it is" in e.value for e in at.error)
