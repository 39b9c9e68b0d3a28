"""medaudit.audit_predictions: the in-memory entry point (arrays, pandas, lists)."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import audit
import audit.registry as registry_module
import medaudit
from audit.check_spec import CheckSpec
from audit.consistency import verify_run
from audit.context import MSG_NO_PATIENT_KEY, AuditContext
from audit.engine import AuditIncompleteError, AuditResult, audit_context
from audit.findings import Finding
from audit.rundir import FINDINGS, RunDir
from ingest.manifest import MSG_NO_PATIENT
from medaudit.api import MSG_DEPLOYMENT_UNUSED

N = 120
FAST = {"label_issues": {"n_boot": 50}}


def _data(n: int = N, seed: int = 0, flips: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.15 + 0.7 * y + rng.normal(0, 0.1, n), 0.01, 0.99)
    given = y.copy()
    given[:flips] = 1 - given[:flips]
    return {"labels": given, "pred_probs": np.column_stack([1 - p1, p1]),
            "patients": np.array([f"MRN-{i // 2:04d}" for i in range(n)], dtype=object)}


def _quiet(**kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return medaudit.audit_predictions(**kwargs)


# -- the example of the issue ------------------------------------------------------------------


def test_issue_example_gives_findings_not_a_log_line() -> None:
    d = _data()
    man = pd.DataFrame({"sample_id": [f"id{i}" for i in range(N)], "label": d["labels"]})
    with pytest.warns(UserWarning, match=re.escape(MSG_NO_PATIENT_KEY[:40])):
        ctx = audit.AuditContext.from_arrays(man, ["neg", "pos"], pred_probs=d["pred_probs"])
    res = audit.audit_context(ctx, checks=["label_issues"], config=FAST)
    assert res.complete and not res.errors
    assert res.findings and {f.check for f in res.findings} == {"label_issues"}
    assert not any("could not run" in f.title for f in res.findings)
    assert list(ctx.manifest["label_name"][:2]) == [["neg", "pos"][v] for v in d["labels"][:2]]


# -- happy paths ---------------------------------------------------------------------------------


def test_numpy_lists_and_pandas_give_the_same_audit() -> None:
    d = _data()
    common = {"patient_ids": d["patients"], "checks": ["label_issues"], "config": FAST}
    a = _quiet(labels=d["labels"], pred_probs=d["pred_probs"], **common)
    b = _quiet(labels=d["labels"].tolist(), pred_probs=d["pred_probs"].tolist(), **common)
    c = _quiet(labels=pd.Series(d["labels"]),
               pred_probs=pd.DataFrame(d["pred_probs"], columns=["neg", "pos"]), **common)
    assert isinstance(a, AuditResult)
    assert [f.to_dict() for f in a.findings] == [f.to_dict() for f in b.findings]
    assert a.findings[0].evidence["noise_rate"] == c.findings[0].evidence["noise_rate"]
    assert c.context is not None and c.context.class_names == ["neg", "pos"]
    # named columns are matched to class_names by name, never taken by position
    swapped = pd.DataFrame(d["pred_probs"][:, ::-1], columns=["pos", "neg"])
    e = _quiet(labels=d["labels"], pred_probs=swapped, class_names=["neg", "pos"], **common)
    assert e.findings[0].evidence["noise_rate"] == a.findings[0].evidence["noise_rate"]
    with pytest.raises(ValueError, match="do not match the class names"):
        _quiet(labels=d["labels"], pred_probs=swapped, class_names=["no", "yes"], **common)
    # string labels with class_names, as a cleanlab user with names would have them
    names = np.where(d["labels"] == 1, "malignant", "benign")
    s = _quiet(labels=names, pred_probs=d["pred_probs"], class_names=["benign", "malignant"],
               **common)
    assert s.findings[0].evidence["noise_rate"] == a.findings[0].evidence["noise_rate"]


def test_table_is_the_full_per_sample_table() -> None:
    d = _data(n=400, flips=40)
    res = _quiet(labels=d["labels"], pred_probs=d["pred_probs"], patient_ids=d["patients"],
                 checks=["label_issues"], config={"label_issues": {"n_boot": 50, "max_listed": 5}})
    table = res.table("label_issues")
    assert len(table) == 400 and list(table.columns[:2]) == ["sample_id", "patient_key"]
    assert table["sample_id"].tolist() == [str(i) for i in range(400)]
    main = res.findings[0]
    assert len(main.sample_ids) == 5 < int(table["is_label_issue"].sum())
    top = table.sort_values("issue_rank")
    assert set(main.sample_ids) <= set(top.loc[top["is_label_issue"], "sample_id"])
    assert table["is_label_issue"].iloc[:40].mean() > 0.7  # the planted flips
    table.loc[0, "issue_rank"] = -5
    assert res.table("label_issues").loc[0, "issue_rank"] != -5  # a copy
    # patient ids were pseudonymized before anything kept them
    assert not table["patient_key"].str.contains("MRN").any()


def test_findings_frame_summary_and_html() -> None:
    d = _data()
    res = _quiet(labels=d["labels"], pred_probs=d["pred_probs"], patient_ids=d["patients"],
                 checks=["label_issues", "outliers", "class_balance_and_size"], config=FAST)
    frame = res.findings_frame()
    assert len(frame) == len(res.findings)
    assert list(frame.columns) == ["check", "severity", "title", "message", "n_samples",
                                   "sample_ids", "recommendation", "references", "evidence"]
    assert frame["n_samples"].tolist() == [len(f.sample_ids) for f in res.findings]
    text = res.summary()
    assert "SKIPPED   outliers: no images" in text and "label_issues:" in text
    html = res._repr_html_()
    assert "<table" in html and "outliers" in html and "no images" in html
    assert "http" not in html and "<script" not in html
    assert "findings" in repr(res) and len(repr(res)) < 300
    assert AuditResult().findings_frame().empty


def test_table_errors_name_the_valid_choices() -> None:
    d = _data()
    res = _quiet(labels=d["labels"], pred_probs=d["pred_probs"], patient_ids=d["patients"],
                 checks=["label_issues", "outliers", "class_balance_and_size"], config=FAST)
    with pytest.raises(ValueError, match="no per-sample table; checks with one: label_issues, "
                                         "duplicates_and_leakage, outliers"):
        res.table("class_balance_and_size")
    with pytest.raises(ValueError, match=r"did not run in this audit \(skipped: no images"):
        res.table("outliers")
    with pytest.raises(ValueError, match="not asked for"):
        res.table("duplicates_and_leakage")
    with pytest.raises(ValueError, match="unknown check 'label_issue'"):
        res.table("label_issue")


def test_images_metadata_and_identifiers() -> None:
    d = _data()
    rng = np.random.default_rng(1)
    images = rng.integers(20, 230, (N, 16, 16, 1)).astype(np.uint8)  # channels-last
    images[5] = images[9]
    meta = pd.DataFrame({"site": rng.choice(["Hospital A", "Hospital B"], N),
                         "PatientBirthDate": ["19600101"] * N, "age": rng.uniform(30, 80, N)})
    with pytest.warns(UserWarning, match="'PatientBirthDate' looks like a direct identifier"):
        res = medaudit.audit_predictions(
            d["labels"], d["pred_probs"], images=images, metadata=meta,
            patient_ids=d["patients"], config=FAST)
    man = res.context.manifest  # type: ignore[union-attr]
    assert "PatientBirthDate" not in man.columns and man["site"].str.startswith("site-").all()
    assert res.context.get("images").shape == (N, 1, 16, 16)  # type: ignore[union-attr]
    dup = res.table("duplicates_and_leakage").set_index("sample_id")
    assert dup.loc["5", "nearest_duplicate"] == "9" and dup.loc["5", "is_exact_duplicate"]
    assert dup.loc["5", "is_cross_patient_duplicate"]  # rows 5 and 9 are different patients
    assert len(res.table("outliers")) == N


def test_no_patient_ids_warns_and_each_row_is_its_own_patient() -> None:
    d = _data()
    with pytest.warns(UserWarning, match=re.escape(MSG_NO_PATIENT[:30])):
        res = medaudit.audit_predictions(d["labels"], d["pred_probs"], checks=["label_issues"],
                                         config=FAST)
    assert res.context.manifest["patient_key"].nunique() == N  # type: ignore[union-attr]


def test_out_writes_a_run_directory_the_cli_can_open(tmp_path: Path) -> None:
    from medaudit.cli import main

    d = _data()
    out = tmp_path / "run"
    res = _quiet(labels=d["labels"], pred_probs=d["pred_probs"], patient_ids=d["patients"],
                 sample_ids=[f"img{i}" for i in range(N)], checks=["label_issues"], config=FAST,
                 deployment_prevalence=0.05, out=out)
    run = RunDir(out)
    verify_run(run)
    assert run.read_manifest()["sample_id"].tolist() == [f"img{i}" for i in range(N)]
    on_disk = [Finding.from_dict(x) for x in json.loads(run.file(FINDINGS).read_text())]
    assert on_disk == res.findings
    info = run.read_run_json()
    assert info["source"] == "external" and info["audit"]["checks_run"] == ["label_issues"]
    assert info["deployment"]["prevalence"] == 0.05
    assert len(res.table("label_issues")) == N  # computed from the run directory
    for p in out.rglob("*"):
        if p.is_file():
            assert b"MRN-" not in p.read_bytes(), p
    with pytest.raises(ValueError, match="already holds a run"):
        medaudit.audit_predictions(d["labels"], d["pred_probs"], out=out)
    assert main(["audit", str(out), "--checks", "label_issues"]) == 0


# -- deployment prevalence -----------------------------------------------------------------------


def test_deployment_prevalence_without_a_consumer_warns() -> None:
    d = _data()
    with pytest.warns(UserWarning, match=re.escape(MSG_DEPLOYMENT_UNUSED.split("{")[0])):
        _ = medaudit.audit_predictions(d["labels"], d["pred_probs"], patient_ids=d["patients"],
                                       checks=["label_issues"], config=FAST,
                                       deployment_prevalence=0.05)


@dataclasses.dataclass(frozen=True)
class _PrevCfg:
    deployment_prevalence: float | None = None


def _echo_prevalence(ctx: AuditContext, config: _PrevCfg) -> list[Finding]:
    return [Finding(check="prevalence_shift", severity="info", title="prevalence",
                    message="stated", evidence={"deployment_prevalence": config.deployment_prevalence,
                                                "method": "echo"})]


def test_deployment_prevalence_reaches_the_check_that_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    specs = dict(registry_module.registry())
    specs["prevalence_shift"] = CheckSpec(name="prevalence_shift", func=_echo_prevalence,
                                          config_cls=_PrevCfg)
    monkeypatch.setattr(registry_module, "registry", lambda: specs)
    d = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        res = medaudit.audit_predictions(d["labels"], d["pred_probs"], patient_ids=d["patients"],
                                         checks=["prevalence_shift"],
                                         deployment_prevalence=[0.95, 0.05])
    assert res.findings[0].evidence["deployment_prevalence"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="disagrees with config"):
        _quiet(labels=d["labels"], pred_probs=d["pred_probs"], checks=["prevalence_shift"],
               config={"prevalence_shift": {"deployment_prevalence": 0.2}},
               deployment_prevalence=0.05)


@pytest.mark.parametrize("value, match", [
    (1.5, r"deployment_prevalence must be in \(0, 1\)"),
    ([0.5, 0.6], "summing to 1"),
    ({"benign": 0.9, "cancer": 0.1}, "keyed by"),
])
def test_bad_deployment_prevalence(value: object, match: str) -> None:
    d = _data()
    with pytest.raises(ValueError, match=match):
        _quiet(labels=d["labels"], pred_probs=d["pred_probs"], class_names=["benign", "malignant"],
               deployment_prevalence=value, checks=["label_issues"])


# -- one clear error per bad input, naming the argument -----------------------------------------


def _bad_inputs() -> list[tuple[str, dict[str, object], type[Exception], str]]:
    d = _data()
    y, p = d["labels"], d["pred_probs"]
    nan = p.copy()
    nan[3, 1] = np.nan
    not_one = p.copy()
    not_one[4] = [0.7, 0.7]
    y_out = y.copy()
    y_out[6] = 5
    y_neg = y.copy().astype(float)
    y_neg[2] = -1
    return [
        ("pred_probs wrong rank", {"labels": y, "pred_probs": p[:, 1]}, ValueError,
         r"pred_probs must have shape \(N, K\).*column_stack"),
        ("pred_probs wrong length", {"labels": y, "pred_probs": p[:-1]}, ValueError,
         r"pred_probs has 119 rows but labels has 120"),
        ("pred_probs NaN", {"labels": y, "pred_probs": nan}, ValueError,
         r"pred_probs has a non-finite value at row 3"),
        ("pred_probs not summing to 1", {"labels": y, "pred_probs": not_one}, ValueError,
         r"pred_probs row 4 .* sums to 1.4, not 1"),
        ("logits", {"labels": y, "pred_probs": p * 4 - 2}, ValueError,
         r"pred_probs has a value outside \[0, 1\]"),
        ("pred_probs text", {"labels": y, "pred_probs": np.full((N, 2), "x")}, TypeError,
         r"pred_probs must hold numbers"),
        ("label out of range", {"labels": y_out, "pred_probs": p}, ValueError,
         r"(?s)labels: 1 of 120 rows are not valid.*index in \[0, 2\); got 5 at row 7"),
        ("negative label", {"labels": y_neg, "pred_probs": p}, ValueError,
         r"(?s)labels: 1 of 120 rows.*got -1.0 at row 3 \(sample_id='2'\)"),
        ("labels 2-D", {"labels": np.eye(2)[y], "pred_probs": p}, ValueError,
         r"labels must be a 1-D sequence.*argmax"),
        ("labels scalar", {"labels": 3, "pred_probs": p}, TypeError, r"labels must be a 1-D"),
        ("one class", {"labels": np.zeros(N, int), "pred_probs": p}, ValueError, r"only one class"),
        ("patient_ids length", {"labels": y, "pred_probs": p, "patient_ids": ["a"] * 5},
         ValueError, r"patient_ids has 5 entries but labels has 120"),
        ("sample_ids duplicated", {"labels": y, "pred_probs": p,
                                   "sample_ids": ["a"] * N}, ValueError,
         r"sample_ids has duplicated sample_id values \['a'\]"),
        ("metadata length", {"labels": y, "pred_probs": p,
                             "metadata": pd.DataFrame({"site": ["a"] * 3})}, ValueError,
         r"metadata has 3 entries but labels has 120"),
        ("metadata type", {"labels": y, "pred_probs": p, "metadata": [1, 2]}, TypeError,
         r"metadata must be a pandas DataFrame"),
        ("bad sex", {"labels": y, "pred_probs": p,
                     "metadata": pd.DataFrame({"sex": ["F"] * (N - 1) + ["unknown"]})},
         ValueError, r"(?s)metadata: 1 of 120 rows .*column 'sex' must be one of F, M, O"),
        ("embeddings length", {"labels": y, "pred_probs": p, "embeddings": np.zeros((N + 1, 3))},
         ValueError, r"embeddings has 121 rows but labels has 120"),
        ("images shape", {"labels": y, "pred_probs": p, "images": np.zeros((N, 8, 9))},
         ValueError, r"images must have shape \(N, S, S\)"),
        ("images range", {"labels": y, "pred_probs": p, "images": np.full((N, 8, 8), 2.0)},
         ValueError, r"images must be uint8 \(0-255\) or float in \[0, 1\]"),
        ("images length", {"labels": y, "pred_probs": p,
                           "images": np.zeros((N - 2, 8, 8), np.uint8)}, ValueError,
         r"images has 118 rows but labels has 120"),
        ("class_names count", {"labels": y, "pred_probs": p, "class_names": ["a", "b", "c"]},
         ValueError, r"class_names has 3 names but pred_probs has 2 columns"),
        ("names without class_names", {"labels": np.where(y == 1, "m", "b"), "pred_probs": p},
         ValueError, r"labels are class names .* pass class_names"),
        ("pred_probs with sample_id", {"labels": y, "pred_probs": pd.DataFrame(
            {"sample_id": range(N), "a": p[:, 0], "b": p[:, 1]})}, ValueError,
         r"pred_probs has a 'sample_id' column, but here rows are aligned by position"),
        ("unknown check", {"labels": y, "pred_probs": p, "checks": ["label_isues"]}, ValueError,
         r"unknown check 'label_isues'; valid checks: label_issues"),
        ("unknown setting", {"labels": y, "pred_probs": p,
                             "config": {"label_issues": {"nboot": 3}}}, ValueError,
         r"check 'label_issues' has no setting\(s\) \['nboot'\]"),
    ]


@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda c: c[0])
def test_bad_inputs_raise_one_clear_error_naming_the_argument(
    case: tuple[str, dict[str, object], type[Exception], str],
) -> None:
    _, kwargs, error, match = case
    with pytest.raises(error, match=match) as info:
        _quiet(**kwargs)
    assert type(info.value) in (error, *error.__subclasses__())


# -- a broken check is never silent --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _NoCfg:
    pass


def _broken(ctx: AuditContext, config: _NoCfg) -> list[Finding]:
    return [Finding(check="broken", severity="pass", title=str(ctx.manifest["no_such_column"]),
                    message="", evidence={})]


@pytest.fixture
def with_broken_check(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = dict(registry_module.registry())
    specs["broken"] = CheckSpec(name="broken", func=_broken, config_cls=_NoCfg,
                                table=lambda ctx, cfg: pd.DataFrame())
    monkeypatch.setattr(registry_module, "registry", lambda: specs)


@pytest.mark.usefixtures("with_broken_check")
def test_a_broken_check_surfaces_in_the_result_and_raise_for_errors(tmp_path: Path) -> None:
    d = _data()
    kwargs = {"labels": d["labels"], "pred_probs": d["pred_probs"],
              "patient_ids": d["patients"], "checks": ["broken", "label_issues"], "config": FAST}
    with pytest.warns(UserWarning, match=r"1 check\(s\) failed .*: broken"):
        res = medaudit.audit_predictions(**kwargs)  # type: ignore[arg-type]
    assert not res.complete
    assert res.errors == [{"check": "broken", "error": "KeyError: 'no_such_column'"}]
    failed = [f for f in res.findings if f.check == "broken"]
    assert failed and failed[0].severity == "warning" and "could not run" in failed[0].title
    assert any(f.check == "label_issues" for f in res.findings)  # the others ran
    assert "FAILED    broken: KeyError" in res.summary()
    assert "Incomplete audit" in res._repr_html_()
    with pytest.raises(AuditIncompleteError, match="broken: KeyError: 'no_such_column'"):
        res.raise_for_errors()
    with pytest.raises(ValueError, match=r"did not run in this audit \(it failed: KeyError"):
        res.table("broken")
    with pytest.raises(AuditIncompleteError, match="broken"):
        _quiet(**kwargs, strict=True)
    # written runs record the failure too
    res = _quiet(**kwargs, out=tmp_path / "run")
    assert RunDir(tmp_path / "run").read_run_json()["audit"]["complete"] is False


def test_audit_context_keeps_what_tables_need() -> None:
    d = _data()
    man = pd.DataFrame({"sample_id": [f"s{i}" for i in range(N)], "label": d["labels"],
                        "patient_key": d["patients"]})
    ctx = AuditContext.from_arrays(man, ["a", "b"], pred_probs=d["pred_probs"])
    cfg = {"label_issues": {"n_boot": 20, "rank_by": "normalized_margin"}}
    res = audit_context(ctx, checks=["label_issues"], config=cfg)
    assert res.context is ctx and res.check_configs["label_issues"].rank_by == "normalized_margin"
    assert len(res.table("label_issues")) == N


def test_import_medaudit_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, medaudit; assert 'pandas' not in sys.modules, 'pandas imported'; "
            "from medaudit import audit_predictions; print(sorted(medaudit.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "audit_predictions" in out.stdout
    assert medaudit.AuditResult is AuditResult
