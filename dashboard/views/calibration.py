"""Page 6, Calibration and prevalence: reliability diagram; threshold and prevalence controls.

Sensitivity and specificity at the chosen threshold come from
:func:`audit.operating_point.metrics_at_threshold` (patient-cluster bootstrap when
patients have several images, else Wilson); PPV, NPV, false alarms and missed cases
per 1,000 at the chosen prevalence from :func:`reports.model_card.ppv_npv_cells`
(Bayes' rule, :func:`audit.operating_point.predictive_values`). Nothing is
re-implemented here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from audit.operating_point import metrics_at_threshold
from audit.rundir import RunDir
from dashboard.data import findings_of
from dashboard.figures import report_figure
from dashboard.state import PageContext
from dashboard.widgets import finding, missing
from reports.model_card import ppv_npv_cells
from reports.render_html import fmt_cell

__all__ = ["CHECKS", "operating_metrics", "render"]

CHECKS = ("calibration", "prevalence_shift")
#: Bootstrap replicates of the interactive intervals (the report uses 1,000).
N_BOOT = 300


@st.cache_resource(max_entries=4, show_spinner=False)
def _evaluated(
    path: str, stamp: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(labels, probs, patient keys)`` of the rows evaluated out of sample."""
    run = RunDir(Path(path))
    if not run.has("oof/pred_probs"):
        return None
    probs = run.read_array("oof/pred_probs", mmap=True)
    m = run.read_manifest()
    rows = np.arange(len(m))
    if run.has("oof/folds"):
        folds = np.asarray(run.read_array("oof/folds"))
        if (folds >= 0).any():
            rows = np.flatnonzero(folds >= 0)
    y = m["label"].to_numpy()[rows]
    if (y < 0).any():  # a predict / drift run without labels
        return None
    return (
        y,
        np.asarray(probs[rows], dtype=np.float64),
        m["patient_key"].astype(str).to_numpy()[rows],
    )


@st.cache_data(max_entries=256, show_spinner="Computing sensitivity and specificity…")
def operating_metrics(
    path: str, stamp: tuple[float, ...], positive: int, threshold: float
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Sensitivity and specificity (interval dicts) at ``threshold`` (cached per threshold)."""
    ev = _evaluated(path, stamp)
    if ev is None:
        return None
    y, p, g = ev
    sens, spec = metrics_at_threshold(
        y, p, threshold, positive_class=positive, groups=g, n_boot=N_BOOT, seed=0
    )
    return sens.to_dict(), spec.to_dict()


def _text(v: Any) -> str:
    return fmt_cell(v)[0]


def pct(d: Any, *, ci: bool = True) -> str:
    """An interval dict (or a number) in percent: ``87.0% (95% CI 79.1–93.6%)``."""
    if isinstance(d, dict):
        e, lo, hi = d.get("estimate"), d.get("ci_low"), d.get("ci_high")
    else:
        e, lo, hi = d, None, None
    if e is None or not np.isfinite(e):
        return "not estimable"
    out = f"{100 * e:.1f}%"
    if ci and lo is not None and hi is not None:
        out += f" (95% CI {100 * lo:.1f}–{100 * hi:.1f}%)"
    return out


def render(ctx: PageContext) -> None:
    """Render the page."""
    st.header("Calibration and prevalence")
    model = ctx.report.model
    if model is None or model.kind == "none":
        missing(
            "No model predictions in this run",
            f"Train a model (`medaudit train {ctx.path}`) or import predictions "
            "(`medaudit audit-predictions`), then audit again.",
        )
        return
    left, right = st.columns([2, 3])
    with left:
        st.subheader("Reliability")
        st.caption(
            "When the model says 70%, is it right 70% of the time? Points on the dashed "
            "line mean the probabilities can be read as risks."
        )
        fig = next((f for f in model.figures if f.kind == "reliability"), None)
        if fig is not None:
            report_figure(fig)
        found = findings_of(ctx.light, *CHECKS)
        if not found:
            st.caption(
                "The calibration and prevalence checks did not run on this run (the "
                "diagram above is computed from the out-of-fold probabilities). Run "
                f"`medaudit audit {ctx.path}` with a medaudit that has them."
            )
        for f in found:
            finding(f)
    with right:
        _controls(ctx, model)


def _controls(ctx: PageContext, model: Any) -> None:
    st.subheader("At your threshold and prevalence")
    st.caption(
        "Move the threshold and the prevalence of the place where the model will be "
        "used: sensitivity and specificity change with the threshold; PPV, NPV and "
        "false alarms also change with the prevalence."
    )
    ops = {o["class_name"]: o for o in model.operating_points}
    ev = _evaluated(ctx.key, ctx.stamp)
    if not ops or ev is None:
        missing(
            "No labelled out-of-fold predictions to evaluate",
            "This run has no labels or no out-of-fold predictions of both classes (a "
            "predict / drift run, for example): the controls need labelled predictions.",
        )
        return
    names = list(ops)
    cname = st.selectbox("Positive class", names, key="cal-class") if len(names) > 1 else names[0]
    op = ops[cname]
    positive = int(op["positive_class"])
    prev = ctx.report.model.prevalences.get(cname, {}) if ctx.report.model else {}
    train_prev = float(prev.get("training") or 0.5)
    dep = prev.get("deployment")
    default_prev = float(dep) if dep else train_prev
    thr = st.slider(
        "Threshold (call positive when the probability is at least this)",
        0.0,
        1.0,
        float(round(op["threshold"], 3)),
        step=0.005,
        key="cal-threshold",
        help=f"default: the audit's operating point ({op['method']})",
    )
    pct_value = st.slider(
        "Deployment prevalence (%)",
        0.1,
        99.9,
        float(round(100 * default_prev, 1)),
        step=0.1,
        key="cal-prevalence",
        help=f"training prevalence {100 * train_prev:.1f}%"
        + (
            f"; stated deployment prevalence {100 * float(dep):.1f}% "
            f"({prev.get('deployment_source')})"
            if dep
            else "; no deployment prevalence stated in this run"
        ),
    )
    st.caption(
        f"The prevalence starts at the stated deployment prevalence "
        f"({100 * float(dep):.1f}%, {prev.get('deployment_source')})."
        if dep
        else f"The prevalence starts at the training prevalence ({100 * train_prev:.1f}%): "
        "this run states no deployment prevalence. Set the one of your clinic."
    )
    p = pct_value / 100
    res = operating_metrics(ctx.key, ctx.stamp, positive, float(thr))
    if res is None:
        return
    sens, spec = res
    ppv, npv, fa, missed = ppv_npv_cells(sens, spec, p)
    c = st.columns(3)
    c[0].metric("Sensitivity", pct(sens, ci=False), help=pct(sens))
    c[1].metric("Specificity", pct(spec, ci=False), help=pct(spec))
    c[2].metric(
        "False alarms per 1,000",
        _text(fa),
        help="people without the condition called positive, per 1,000 screened at this prevalence",
    )
    c = st.columns(3)
    c[0].metric(
        "PPV",
        pct(ppv, ci=False),
        help="positive predictive value: of those called "
        "positive, the share who have the condition; " + pct(ppv),
    )
    c[1].metric(
        "NPV",
        pct(npv, ci=False),
        help="negative predictive value: of those called "
        "negative, the share who do not; " + pct(npv),
    )
    c[2].metric(
        "Missed per 1,000",
        _text(missed),
        help="people with the condition called negative, per 1,000 screened",
    )
    st.markdown(
        f"| at threshold {thr:.3f}, prevalence {pct_value:.1f}% | estimate (95% CI) |\n|---|---|\n"
        f"| sensitivity | {pct(sens)} |\n| specificity | {pct(spec)} |\n"
        f"| PPV | {pct(ppv)} |\n| NPV | {pct(npv)} |\n"
        f"| false alarms per 1,000 screened | {_text(fa)} |\n"
        f"| missed cases per 1,000 screened | {_text(missed)} |"
    )
    st.caption(
        f"{cname} vs the rest on {len(ev[0]):,} out-of-fold images; sensitivity and "
        f"specificity by {sens.get('method')}; PPV/NPV by Bayes' rule at the prevalence "
        "chosen (the probabilities themselves are not re-calibrated to it)."
    )
