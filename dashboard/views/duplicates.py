"""Page 3, Duplicates and leakage: flagged image pairs side by side, with review buttons."""

from __future__ import annotations

from typing import Any

import streamlit as st

from audit.reviews import pair_key
from dashboard.data import findings_of
from dashboard.review_ui import flash, paginate, review_controls
from dashboard.state import PageContext, cached_check_table
from dashboard.widgets import finding, missing
from reports.evidence import iter_records

__all__ = ["CHECK", "pairs_of", "render"]

CHECK = "duplicates_and_leakage"


def pairs_of(findings: list[Any]) -> list[dict[str, Any]]:
    """Every pair listed in the findings' evidence (records with ``sample_id_a``/``_b``), once."""
    seen: dict[str, dict[str, Any]] = {}
    for f in findings:
        for path, records in iter_records(f.evidence):
            for r in records:
                if "sample_id_a" in r and "sample_id_b" in r:
                    key = pair_key(r["sample_id_a"], r["sample_id_b"])
                    if key not in seen:
                        seen[key] = {**r, "finding": f.id, "title": f.title, "where": path}
    return sorted(seen.values(), key=lambda r: (float(r.get("distance") or 0.0), r["finding"]))


def render(ctx: PageContext) -> None:
    """Render the page."""
    st.header("Duplicates and leakage")
    st.caption(
        "Exact and near-duplicate images, duplicates filed under different patients, "
        "and duplicates that cross the train/test split or the cross-validation folds "
        "(which inflate the measured performance). Decide for each pair whether it is "
        "the same patient; `medaudit export-reviews` merges confirmed patients in the "
        "corrected manifest."
    )
    audit = ctx.info.get("audit") or {}
    if not audit:
        missing("This run has not been audited", f"Run `medaudit audit {ctx.path}`.")
        return
    skipped = {s["check"]: s.get("reason", "") for s in audit.get("skipped") or []}
    if CHECK in skipped or CHECK not in (audit.get("checks_run") or []):
        missing(
            "The duplicate check did not run on this run",
            f"Reason recorded by the audit: {skipped.get(CHECK, 'not asked for')}. "
            "The check needs the image cache "
            f"(`images.npy`): ingest images, then `medaudit audit {ctx.path} --checks {CHECK}`.",
        )
        return
    found = findings_of(ctx.light, CHECK)
    for f in found:
        finding(f)
    pairs = [
        p
        for p in pairs_of(found)
        if p["sample_id_a"] in ctx.row_of and p["sample_id_b"] in ctx.row_of
    ]
    if not pairs:
        st.success("No duplicate pair was found.")
        return
    with st.expander("Every image's nearest duplicate (the check's full per-sample table)"):
        if st.toggle("Compute the full table (reruns the neighbour search once)", key="dup-full"):
            res = cached_check_table(ctx.key, ctx.stamp, CHECK)
            if res.table is None:
                st.info(res.reason)
            else:
                t = res.table[res.table["duplicate_group"] >= 0]
                st.dataframe(t, hide_index=True, width="stretch")
    flash()
    decisions = ctx.store.decisions("duplicate")
    st.markdown(f"**{len(pairs):,}** pair(s) listed by the findings; {len(decisions):,} reviewed.")
    if not ctx.reviewer:
        st.warning("Enter your name in the sidebar to record decisions.", icon=":material/edit:")
    start, stop = paginate(len(pairs), key="dup", sizes=(5, 10, 20))
    m = ctx.manifest
    for p in pairs[start:stop]:
        a, b = str(p["sample_id_a"]), str(p["sample_id_b"])
        with st.container(border=True):
            st.markdown(
                f"**{p['title']}** ({p['finding']}) · {p.get('kind', '')} duplicate · "
                f"distance {float(p.get('distance') or 0):.4f}"
            )
            st.caption("distance: 1 − correlation of the two images' pixels (0 = identical)")
            c1, c2, c3 = st.columns([1, 1, 1.6])
            for col, sid in ((c1, a), (c2, b)):
                r = ctx.row_of[sid]
                png = ctx.thumbnail(r, max_px=192)
                if png is not None:
                    col.image(png, width="stretch")
                row = m.iloc[r]
                extra = "".join(f" · {c} `{row[c]}`" for c in ("site", "split") if c in m.columns)
                col.markdown(
                    f"`{sid}`  \n{row['label_name']} · patient `{row['patient_key']}`{extra}"
                )
            with c3:
                review_controls(ctx, "duplicate", pair_key(a, b), decisions.get(pair_key(a, b)))
