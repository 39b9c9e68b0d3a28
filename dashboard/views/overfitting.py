"""Page 7, Overfitting and drift: learning histories per fold, the learning curve, drift results."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from audit.rundir import RunDir
from dashboard.figures import report_figure
from dashboard.state import PageContext
from dashboard.widgets import finding, missing, show_table

__all__ = ["LEARNING_CURVE", "render"]

#: The learning curve written by training (performance against training-set size).
LEARNING_CURVE = "train/learning_curve.json"


def _curve_frame(curve: Any) -> pd.DataFrame | None:
    """``train/learning_curve.json`` as a frame: a list of records or a dict of equal lists."""
    if isinstance(curve, dict):
        for key in ("points", "curve", "rows"):
            if isinstance(curve.get(key), list):
                curve = curve[key]
                break
    if isinstance(curve, list) and curve and all(isinstance(r, dict) for r in curve):
        flat = [
            {
                k: (v.get("estimate") if isinstance(v, dict) and "estimate" in v else v)
                for k, v in r.items()
                if not isinstance(v, (list, dict)) or "estimate" in v
            }
            for r in curve
        ]
        return pd.DataFrame(flat)
    if isinstance(curve, dict):
        lists = {k: v for k, v in curve.items() if isinstance(v, list)}
        if lists and len({len(v) for v in lists.values()}) == 1:
            return pd.DataFrame(lists)
    return None


def render(ctx: PageContext) -> None:
    """Render the page."""
    st.header("Overfitting and drift")
    st.caption(
        "Did the model memorise its training images instead of learning what "
        "generalises? Does new data still look like the data it was trained on?"
    )
    run = RunDir(ctx.path)
    shown = False
    light = ctx.light
    found = [
        f
        for f in (light.findings.findings if light.findings else [])
        if f.check == "overfitting" or "drift" in f.check
    ]
    for f in found:
        finding(f, expanded=f.severity in ("critical", "warning"))
        shown = True
    model = ctx.report.model if ctx.info.get("train") else None  # learning curves: trained runs
    if model is not None:
        fig = next((f for f in model.figures if f.kind == "learning_curves"), None)
        if fig is not None:
            st.subheader("Learning histories per fold")
            report_figure(fig)
            shown = True
        folds = next((t for t in model.tables if t.title == "Folds"), None)
        if folds is not None:
            show_table(folds)
            shown = True
    if run.has(LEARNING_CURVE):
        st.subheader("Learning curve")
        frame = _curve_frame(run.read_json(LEARNING_CURVE))
        if frame is None:
            st.json(run.read_json(LEARNING_CURVE), expanded=False)
        else:
            st.dataframe(frame, hide_index=True, width="stretch")
            x = next(
                (
                    c
                    for c in ("n_train", "n", "fraction", "train_fraction", "size")
                    if c in frame.columns
                ),
                None,
            )
            ys = [
                c
                for c in frame.columns
                if c != x
                and pd.api.types.is_numeric_dtype(frame[c])
                and ("auc" in c.lower() or "loss" in c.lower())
            ]
            if x and ys:
                st.line_chart(frame, x=x, y=ys)
            st.caption(
                "Performance against the number of training images: a curve still "
                "rising means more data would help."
            )
        shown = True
    if not shown:
        missing(
            "No learning history, learning curve or drift result in this run",
            "Learning histories come with `medaudit train` (a run of external predictions "
            "has none); the overfitting and drift checks write the rest: run "
            f"`medaudit audit {ctx.path}` with a medaudit that has them (see `medaudit "
            "audit --list`).",
        )
    elif not found:
        st.caption(
            "The overfitting and drift checks did not run on this run; run `medaudit "
            "audit` with a medaudit that has them to add their findings here."
        )
