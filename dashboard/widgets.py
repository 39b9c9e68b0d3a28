"""Streamlit pieces shared by the pages: tables, findings, severity badges, empty states."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from reports.evidence import evidence_view, is_estimate
from reports.model import FindingView, Table
from reports.render_html import fmt_cell
from reports.summary import STATUS_LABELS

__all__ = [
    "SEVERITY_ICON",
    "STATUS_COLOR",
    "finding",
    "missing",
    "show_table",
    "status_badge",
    "table_frame",
]

#: Badge colour of each traffic-light status (the badge also says it in words: colour is
#: never the only cue). Material icons ship with Streamlit; emoji fonts may be missing.
STATUS_COLOR = {
    "failed": "violet",
    "critical": "red",
    "warning": "orange",
    "ok": "green",
    "skipped": "gray",
    "not_run": "gray",
}
SEVERITY_ICON = {
    "critical": ":material/error:",
    "warning": ":material/warning:",
    "info": ":material/info:",
    "pass": ":material/check_circle:",
}


def table_frame(table: Table) -> pd.DataFrame:
    """A report :class:`~reports.model.Table` as a frame of readable cells (intervals as text)."""
    rows = []
    for r in table.rows:
        rows.append(
            [
                fmt_cell(v)[0]
                if (v is None or is_estimate(v) or isinstance(v, (dict, list)))
                else v
                for v in r
            ]
        )
    cols = [c if c else " " for c in table.columns]
    frame = pd.DataFrame(rows, columns=cols)
    for c in frame.columns:  # mixed columns as text: Arrow needs one type per column
        if frame[c].map(type).nunique() > 1:
            frame[c] = frame[c].map(lambda v: fmt_cell(v)[0])
    return frame


def show_table(table: Table, *, key: str | None = None, height: int | None = None) -> None:
    """A titled table with its note."""
    st.markdown(f"**{table.title}**")
    frame = table_frame(table)
    kw: dict[str, Any] = {"hide_index": True, "width": "stretch"}
    if height is not None:
        kw["height"] = height
    st.dataframe(frame, key=key, **kw)
    if table.note:
        st.caption(table.note)


def missing(what: str, how: str) -> None:
    """The empty state of a page or section: what is absent, and what to run to get it."""
    st.info(f"**{what}**\n\n{how}", icon=":material/info:")


def finding(f: FindingView, *, expanded: bool = False) -> None:
    """Any finding, whatever its check: title, message, what to do, evidence as tables."""
    with st.expander(
        f"{f.severity.upper()} · {f.title}  ({f.check}, {f.id})",
        expanded=expanded,
        icon=SEVERITY_ICON.get(f.severity),
    ):
        st.markdown(f.message)
        if f.recommendation:
            st.markdown(f"**What to do:** {f.recommendation}")
        view = evidence_view(f.evidence)
        if view.scalars:
            frame = pd.DataFrame(
                [[k, fmt_cell(v)[0], fmt_cell(v)[1] or ""] for k, v in view.scalars],
                columns=["evidence", "value", "method"],
            )
            if not frame["method"].str.len().any():
                frame = frame.drop(columns=["method"])
            st.dataframe(frame, hide_index=True, width="stretch")
        for t in view.tables:
            show_table(t)
        if f.n_samples:
            st.caption(f"{f.n_samples} sample(s) affected")
        if f.references:
            st.caption("Checklist items: " + "; ".join(r["key"] for r in f.references))


def status_badge(status: str) -> str:
    """Markdown badge of a traffic-light status: its words on its colour."""
    return f":{STATUS_COLOR.get(status, 'gray')}-badge[{STATUS_LABELS.get(status, status)}]"


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")
