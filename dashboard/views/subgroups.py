"""Page 5, Subgroups: performance per site, scanner, sex, age band, view; table and forest plot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.data import findings_of
from dashboard.figures import forest_plot
from dashboard.state import PageContext
from dashboard.widgets import finding, missing
from reports.render_html import fmt_cell

__all__ = ["CHECK", "METRICS", "group_table", "render"]

CHECK = "subgroup_performance"
METRICS = ("auc", "sensitivity", "specificity")


#: Columns shown first, in this order; the others follow.
FIRST = (
    "column",
    "level",
    "n",
    "prevalence",
    "auc",
    "sensitivity",
    "specificity",
    "auc_gap",
    "q_value",
    "flagged",
    "too_small",
)


def group_table(groups: list[Mapping[str, Any]]) -> pd.DataFrame:
    """The per-group evidence as a readable table (intervals as ``est [lo, hi]``)."""
    rows = []
    for g in groups:
        row: dict[str, Any] = {}
        keys = [k for k in FIRST if k in g] + [
            k
            for k in g
            if k not in FIRST  # "columns" only when several share the partition
            and (k != "columns" or len(g.get("columns") or []) > 1)
        ]
        for k in keys:
            v = g[k]
            row[k] = fmt_cell(v)[0] if (v is None or isinstance(v, (Mapping, list))) else v
        rows.append(row)
    frame = pd.DataFrame(rows)
    for c in frame.columns:
        if frame[c].map(type).nunique() > 1:
            frame[c] = frame[c].map(lambda v: fmt_cell(v)[0])
    return frame


def render(ctx: PageContext) -> None:
    """Render the page."""
    st.header("Subgroups")
    st.caption(
        "Does the model work equally well for every site, scanner, sex, age band and "
        "view? Each square is a group's estimate with its 95% confidence interval; "
        "hollow grey squares are groups too small to judge."
    )
    found = findings_of(ctx.light, CHECK)
    with_groups = [
        f for f in found if isinstance(f.evidence.get("groups"), list) and f.evidence["groups"]
    ]
    if not found:
        missing(
            "No subgroup analysis in this run",
            f"The {CHECK} check did not run. It needs out-of-fold predictions and metadata "
            f"columns (site, scanner, sex, age, view): run `medaudit audit {ctx.path}` with "
            "a medaudit that has it (see `medaudit audit --list`).",
        )
        return
    for f in found:
        finding(f, expanded=f.severity in ("critical", "warning"))
    for f in with_groups:
        groups = f.evidence["groups"]
        metrics = [m for m in METRICS if any(isinstance(g.get(m), Mapping) for g in groups)]
        st.subheader(f"Per group ({f.id})")
        if metrics:
            overall: dict[str, Any] = dict(f.evidence.get("overall") or {})
            auc = (ctx.info.get("train") or {}).get("oof_auc")
            if "auc" not in overall and auc:
                overall["auc"] = auc
            st.pyplot(forest_plot(groups, metrics, overall), width="content")
        st.dataframe(group_table(groups), hide_index=True, width="stretch")
        st.caption(
            "auc_gap: the group's AUC minus that of the other images; q_value: "
            "p-value corrected for the number of groups tested (false discovery rate)."
        )
