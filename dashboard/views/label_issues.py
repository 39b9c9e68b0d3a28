"""Page 2, Label issues: the ranked gallery of suspected mislabelled images, with review buttons.

The ranking is the label-issues check's own per-sample table
(:func:`audit.checks.label_issues.sample_table`) computed with the settings recorded
in ``run.json``: every image, not only the top ones the finding lists.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard.data import findings_of
from dashboard.review_ui import chunks, flash, paginate, review_controls
from dashboard.state import PageContext, cached_check_table
from dashboard.widgets import finding, missing

__all__ = ["CHECK", "render"]

CHECK = "label_issues"
COLUMNS = 4


def render(ctx: PageContext) -> None:
    """Render the page."""
    st.header("Label issues")
    st.caption(
        "Images whose given label disagrees with what the out-of-fold model predicts "
        "confidently (confident learning, cleanlab). A low label-quality score means the "
        "label is more likely wrong. Look at each image and record a decision; "
        "`medaudit export-reviews` turns confirmed errors into a corrected manifest."
    )
    res = cached_check_table(ctx.key, ctx.stamp, CHECK)
    if res.table is None:
        missing(
            "No label-issue ranking for this run",
            res.reason + ". The ranking needs "
            "out-of-fold probabilities: `medaudit train RUN_DIR` then `medaudit audit "
            "RUN_DIR`, or `medaudit audit-predictions` for a model trained elsewhere.",
        )
        return
    for f in findings_of(ctx.light, CHECK):
        finding(f)
    table = res.table
    m = ctx.manifest
    flash()
    decisions = ctx.store.decisions("label_issue")

    c1, c2, c3, c4 = st.columns([1.2, 1.5, 1.5, 2])
    flagged_only = c1.toggle(
        "Flagged only",
        value=True,
        key="li-flagged",
        help="only images the check flags as likely mislabelled; off: every image, ranked",
    )
    classes = sorted(table["given_label_name"].astype(str).unique())
    pick_classes = c2.multiselect(
        "Given label", classes, key="li-classes", placeholder="all classes"
    )
    sites = sorted(m["site"].dropna().astype(str).unique()) if "site" in m.columns else []
    pick_sites = c3.multiselect(
        "Site", sites, key="li-sites", placeholder="all sites", disabled=not sites
    )
    lo, hi = c4.slider("Label-quality score", 0.0, 1.0, (0.0, 1.0), step=0.01, key="li-score")
    status = st.radio(
        "Review status", ["all", "not reviewed", "reviewed"], horizontal=True, key="li-status"
    )

    sel = np.ones(len(table), dtype=bool)
    if flagged_only and "is_label_issue" in table:
        sel &= table["is_label_issue"].to_numpy(dtype=bool)
    if pick_classes:
        sel &= table["given_label_name"].astype(str).isin(pick_classes).to_numpy()
    if pick_sites:
        sel &= m["site"].astype(str).isin(pick_sites).to_numpy()
    score = table["label_quality_score"].to_numpy(dtype=float)
    sel &= (score >= lo - 1e-12) & (score <= hi + 1e-12)
    if status != "all":
        reviewed = table["sample_id"].astype(str).isin(list(decisions)).to_numpy()
        sel &= reviewed if status == "reviewed" else ~reviewed
    rows = np.flatnonzero(sel)
    rows = rows[np.argsort(score[rows], kind="stable")]  # most suspicious first
    st.markdown(
        f"**{len(rows):,}** image(s) match (of {len(table):,}; "
        f"{int(table['is_label_issue'].sum()):,} flagged by the check; "
        f"{len(decisions):,} reviewed)."
    )
    if not len(rows):
        st.info("No image matches these filters.")
        return
    if not ctx.reviewer:
        st.warning("Enter your name in the sidebar to record decisions.", icon=":material/edit:")
    if ctx.thumbnail(0, max_px=16) is None:
        st.caption(
            "This run has no image cache (predictions imported without images), so the "
            "cards show the labels and scores only."
        )
    start, stop = paginate(len(rows), key="li")
    for line in chunks(list(rows[start:stop]), COLUMNS):
        cols = st.columns(COLUMNS, border=True)
        for col, r in zip(cols, line):
            with col:
                _card(ctx, table, int(r), decisions)


def _card(ctx: PageContext, table, r: int, decisions) -> None:  # type: ignore[no-untyped-def]
    row = table.iloc[r]
    sid = str(row["sample_id"])
    png = ctx.thumbnail(r, max_px=192)
    if png is not None:
        st.image(png, width="stretch")
    m = ctx.manifest.iloc[r]
    site = f" · site `{m['site']}`" if "site" in ctx.manifest.columns else ""
    st.markdown(
        f"**given:** {row['given_label_name']} → **suggested:** "
        f"{row['suggested_label_name']}  \n"
        f"label quality **{float(row['label_quality_score']):.3f}** · rank "
        f"{int(row['issue_rank']) if 'issue_rank' in row else '–'} of {len(table):,}  \n"
        f"`{sid}` · patient `{row['patient_key']}`{site}"
    )
    review_controls(
        ctx,
        "label_issue",
        sid,
        decisions.get(sid),
        corrected_label=str(row["suggested_label_name"]),
    )
