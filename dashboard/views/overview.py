"""Page 1, Overview: traffic lights of every check, dataset counts, OOF metrics, reliability."""

from __future__ import annotations

import streamlit as st

from dashboard.figures import report_figure
from dashboard.state import PageContext
from dashboard.widgets import finding, md_cell, missing, show_table, status_badge

__all__ = ["render"]


def render(ctx: PageContext) -> None:
    """Render the page."""
    report = ctx.light  # traffic lights and findings first; the model card below
    st.header(f"Overview · {ctx.run_name}")
    summary = report.summary
    if summary is None or not summary.audited:
        missing(
            "This run has not been audited yet",
            f"Run `medaudit audit {ctx.path}` to run the checks; the traffic lights, "
            "findings and review pages fill in from its findings.",
        )
    else:
        text = summary.verdict
        evaluated = [r for r in summary.checks if r.status not in ("not_run", "skipped")]
        if not evaluated:  # "no finding" because nothing was looked at is no good news
            st.warning(
                f"{text} No check was evaluated in this audit, so nothing is known "
                f"yet: run `medaudit audit {ctx.path}`.",
                icon=":material/warning:",
            )
        elif summary.counts.get("critical"):
            st.error(text, icon=":material/error:")
        elif summary.counts.get("warning") or not summary.complete:
            st.warning(text, icon=":material/warning:")
        else:
            st.success(text, icon=":material/check_circle:")
    ds = report.dataset
    cols = st.columns(5)
    counts = ds.counts if ds else {}
    cols[0].metric("Images", f"{counts.get('n_images', len(ctx.manifest)):,}")
    cols[1].metric("Patients", f"{counts.get('n_patients', 0):,}")
    cols[2].metric("Classes", len(counts.get("classes") or []))
    cols[3].metric(
        "Refused at ingest",
        f"{counts.get('n_refused', 0):,}",
        help="inputs listed in quarantine.csv with their reason",
    )
    auc = (ctx.info.get("train") or {}).get("oof_auc") or {}
    if auc.get("estimate") is not None:
        cols[4].metric(
            "Out-of-fold AUC",
            f"{auc['estimate']:.3f}",
            help=f"95% CI {auc.get('ci_low', float('nan')):.3f} to "
            f"{auc.get('ci_high', float('nan')):.3f} ({auc.get('method', '')})",
        )
    else:
        cols[4].metric("Out-of-fold AUC", "–", help="no model trained by medaudit in this run")

    if summary is not None:
        st.subheader("Every check")
        st.caption(
            "Each check with its status in words and colour; checks skipped for lack of "
            "evidence, checks that failed and checks not run are listed too."
        )
        lines = [
            "| status | check | result | what it means | what to do |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {status_badge(r.status)} | `{r.check}` | {md_cell(r.headline)} | "
            f"{md_cell(r.meaning)} | {md_cell(r.action)} |"
            for r in summary.checks
        ]
        st.markdown("\n".join(lines))

    if report.findings is not None and report.findings.findings:
        st.subheader(f"All findings ({len(report.findings.findings)})")
        for f in report.findings.findings:
            finding(f)
    st.subheader("The model")
    model = ctx.report.model
    if model is None or model.kind == "none":
        missing(
            "No model predictions in this run",
            f"Train one with `medaudit train {ctx.path}` (or import predictions with "
            "`medaudit audit-predictions`), then audit again.",
        )
    else:
        st.caption(model.note)
        for t in model.tables:
            if t.title.startswith(("Performance", "Operating point")):
                show_table(t)
        figs = {f.kind: f for f in model.figures}
        left, right = st.columns(2)
        if "reliability" in figs:
            with left:
                st.markdown("**Reliability of its probabilities**")
                report_figure(figs["reliability"])
        if "roc" in figs:
            with right:
                st.markdown("**ROC curve**")
                report_figure(figs["roc"])
    if ds is not None and ds.warnings:
        with st.expander(f"Ingest warnings ({len(ds.warnings)})"):
            for w in ds.warnings:
                st.markdown(f"- {w}")
