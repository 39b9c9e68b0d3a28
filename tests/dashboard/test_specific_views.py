"""The views driven by the evidence of checks landing on other branches (issues 15-17).

Synthetic findings in the documented shapes (subgroup ``groups``, shortcut ``columns`` /
``properties`` / ``variants``, calibration ``reliability`` / ``calibrator``, overfitting
with ``model_quality``, ``train/learning_curve.json``) are added to the demo-like run;
each page must show them through its specific view, without exceptions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from audit.rundir import RunDir
from dashboard.figures import forest_plot
from tests.dashboard.test_app_pages import _app, _text


def _est(e: float, lo: float, hi: float, method: str = "DeLong") -> dict:
    return {"estimate": e, "ci_low": lo, "ci_high": hi, "level": 0.95, "method": method}


GROUPS = [
    {
        "column": "site",
        "level": "site-a",
        "n": 80,
        "prevalence": 0.5,
        "auc": _est(0.86, 0.78, 0.93),
        "sensitivity": _est(0.8, 0.66, 0.9, "Wilson"),
        "specificity": _est(0.85, 0.72, 0.93, "Wilson"),
        "auc_gap": 0.07,
        "too_small": False,
        "q_value": 0.04,
    },
    {
        "column": "site",
        "level": "site-b",
        "n": 80,
        "prevalence": 0.45,
        "auc": _est(0.72, 0.61, 0.82),
        "sensitivity": _est(0.7, 0.55, 0.82, "Wilson"),
        "specificity": None,
        "auc_gap": -0.07,
        "too_small": False,
        "q_value": 0.04,
    },
    {
        "column": "sex",
        "level": "O",
        "n": 4,
        "prevalence": 0.25,
        "auc": None,
        "sensitivity": None,
        "specificity": None,
        "auc_gap": None,
        "too_small": True,
        "q_value": None,
    },
]


def _finding(
    check: str,
    title: str,
    evidence: dict,
    severity: str = "warning",
    sample_ids: list[str] | None = None,
) -> dict:
    return {
        "check": check,
        "severity": severity,
        "title": title,
        "message": f"{title}: a synthetic finding.",
        "evidence": evidence,
        "sample_ids": sample_ids or [],
        "recommendation": "Look at it.",
        "references": [],
    }


@pytest.fixture
def enriched_run(runs_folder: Path) -> Path:
    run = RunDir(runs_folder / "demo")
    ids = run.read_manifest()["sample_id"].astype(str).tolist()
    model_quality = {"oof_auc": _est(0.81, 0.74, 0.87), "rule": "AUC >= 0.7"}
    new = [
        _finding(
            "subgroup_performance",
            "AUC differs between sites",
            {
                "groups": GROUPS,
                "method": "DeLong per group; Benjamini-Hochberg",
                "model_quality": model_quality,
            },
        ),
        _finding(
            "metadata_shortcut",
            "Site predicts the label",
            {
                "columns": [
                    {"column": "site", "auc": _est(0.71, 0.63, 0.79), "n": 160},
                    {"column": "sex", "auc": _est(0.52, 0.43, 0.6), "n": 160},
                ]
            },
        ),
        _finding(
            "image_property_shortcut",
            "Brightness predicts the label",
            {
                "properties": [
                    {
                        "property": "mean_intensity",
                        "auc": _est(0.9, 0.85, 0.94),
                        "extreme_sample_ids": ids[:3] + ids[-3:],
                    }
                ]
            },
            sample_ids=ids[:3],
        ),
        _finding(
            "masking_test",
            "The model keeps its AUC with the centre masked",
            {
                "variants": [
                    {
                        "variant": "center_masked",
                        "auc": 0.78,
                        "auc_original": 0.81,
                        "difference": -0.03,
                    },
                    {
                        "variant": "border_only",
                        "auc": 0.74,
                        "auc_original": 0.81,
                        "difference": -0.07,
                    },
                ],
                "anatomy_layout": {
                    "setting": "auto",
                    "layout": "centered",
                    "resolved_from": "auto: dicom_modality CR, DX on every row",
                },
            },
            severity="critical",
        ),
        _finding(
            "calibration",
            "Probabilities are over-confident",
            {
                "reliability": [
                    {
                        "lo": i / 5,
                        "hi": (i + 1) / 5,
                        "n": 30,
                        "mean_predicted": i / 5 + 0.1,
                        "observed_rate": min(1.0, i / 5 + 0.15),
                    }
                    for i in range(5)
                ],
                "calibrator": {
                    "method": "temperature scaling",
                    "ece_before": 0.08,
                    "ece_after": 0.03,
                },
            },
        ),
        _finding(
            "overfitting",
            "In-sample AUC far above out-of-fold AUC",
            {"gap": _est(0.12, 0.08, 0.16, "bootstrap"), "model_quality": model_quality},
        ),
    ]
    found = json.loads(run.file("findings.json").read_text())
    run.write_json("findings.json", found + new)
    info = run.read_run_json()["audit"]
    info["checks_run"] = sorted({*info["checks_run"], *(f["check"] for f in new)})
    run.update_run_json({"audit": info})
    run.write_json(
        "train/learning_curve.json",
        {
            "points": [
                {"n_train": n, "oof_auc": _est(a, a - 0.05, a + 0.05)}
                for n, a in ((40, 0.65), (80, 0.74), (160, 0.81))
            ]
        },
    )
    return runs_folder


def _images(at: AppTest) -> int:
    return len(at.get("image"))


def test_subgroups_page_draws_the_forest_plot(
    monkeypatch: pytest.MonkeyPatch, enriched_run: Path
) -> None:
    at = _app(monkeypatch, enriched_run, run="demo", page="subgroups")
    assert not at.exception
    assert _images(at) >= 1  # the forest plot
    # the synthetic finding's table (the real check's finding on this run comes with its own)
    table = next(
        df.value
        for df in at.dataframe
        if "level" in df.value.columns and list(df.value["level"]) == ["site-a", "site-b", "O"]
    )
    assert table["auc"].iloc[0] == "0.86 [0.78, 0.93]"
    assert "too small" in _text(at)


def test_shortcuts_page_shows_probes_extremes_and_masked_images(
    monkeypatch: pytest.MonkeyPatch, enriched_run: Path
) -> None:
    at = _app(monkeypatch, enriched_run, run="demo", page="shortcuts")
    assert not at.exception
    text = _text(at)
    assert "Images at the extremes of **mean_intensity**" in text
    assert "Masking test" in text
    assert "Image layout: " in text  # the layout the anatomy-hidden rule assumed
    # 6 extremes + per class: original, center_masked, border_only
    assert _images(at) >= 6 + 2 * 3
    assert any(
        "site" in str(df.value.get("column", "")) for df in at.dataframe if hasattr(df.value, "get")
    )


def test_calibration_page_uses_the_checks_reliability_bins(
    monkeypatch: pytest.MonkeyPatch, enriched_run: Path
) -> None:
    at = _app(monkeypatch, enriched_run, run="demo", page="calibration")
    assert not at.exception
    assert "calibration finding" in _text(at)  # the diagram's source is the check's bins
    assert "temperature scaling" in str([df.value for df in at.dataframe])


def test_overfitting_page_shows_the_learning_curve(
    monkeypatch: pytest.MonkeyPatch, enriched_run: Path
) -> None:
    at = _app(monkeypatch, enriched_run, run="demo", page="overfitting")
    assert not at.exception
    frames = [df.value for df in at.dataframe]
    curve = next(f for f in frames if "n_train" in f.columns)
    assert list(curve["n_train"]) == [40, 80, 160] and curve["oof_auc"].iloc[-1] == 0.81
    assert "In-sample AUC far above out-of-fold AUC" in str([e.label for e in at.expander])


def test_forest_plot_handles_missing_and_small_groups() -> None:
    fig = forest_plot(GROUPS, ["auc", "sensitivity", "specificity"], {"auc": _est(0.8, 0.7, 0.9)})
    axes = fig.get_axes()
    assert len(axes) == 3
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == ["site = site-a  (n=80)", "site = site-b  (n=80)", "sex = O  (n=4)  too small"]
    assert any(t.get_text() == "not estimable" for t in axes[2].texts)
