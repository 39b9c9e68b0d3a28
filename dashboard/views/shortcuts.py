"""Page 4, Shortcuts: can the label be read from something other than the anatomy?

Metadata, embedding and image-property probes, the masking test with the masked
images shown, hidden stratification, and the images at the extremes of a predictive
property. Driven by the evidence keys of those checks (``columns``, ``properties``
with ``extreme_sample_ids``, ``variants``), so it shows whatever of them the run has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from audit.masking import MASKED_VARIANTS
from dashboard.data import findings_of
from dashboard.state import PageContext
from dashboard.widgets import finding, missing, show_table
from reports.render_html import fmt_cell

__all__ = ["CHECKS", "render"]

CHECKS = (
    "metadata_shortcut",
    "embedding_encodes_metadata",
    "image_property_shortcut",
    "masking_test",
    "hidden_stratification",
)
EXTREMES_SHOWN = 6


def _frame(records: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Records as a table; intervals as ``est [lo, hi]``, lists and mappings as text."""
    frame = pd.DataFrame(
        [
            {
                k: (fmt_cell(v)[0] if isinstance(v, (Mapping, list)) or v is None else v)
                for k, v in r.items()
            }
            for r in records
        ]
    )
    for c in frame.columns:
        if frame[c].map(type).nunique() > 1:
            frame[c] = frame[c].map(lambda v: fmt_cell(v)[0])
    return frame


def _images(ctx: PageContext, ids: list[str], caption: str) -> None:
    rows = [(s, ctx.row_of[s]) for s in ids if s in ctx.row_of][:EXTREMES_SHOWN]
    if not rows:
        return
    cols = st.columns(EXTREMES_SHOWN)
    for col, (sid, r) in zip(cols, rows):
        png = ctx.thumbnail(r, max_px=128)
        if png is not None:
            col.image(png, caption=f"{sid} ({ctx.manifest['label_name'].iat[r]})", width="stretch")
    st.caption(caption)


def _properties(ctx: PageContext, f: Any) -> None:
    props = f.evidence.get("properties")
    if not isinstance(props, list) or not props:
        return
    st.markdown(f"**Image properties that predict the label** ({f.id})")
    frame = _frame([{k: v for k, v in p.items() if k != "extreme_sample_ids"} for p in props])
    st.dataframe(frame, hide_index=True, width="stretch")
    for p in props:
        ids = [str(s) for s in p.get("extreme_sample_ids") or []]
        if ids:
            st.markdown(f"Images at the extremes of **{p.get('property')}**")
            _images(
                ctx,
                ids,
                "If these images differ by something other than anatomy (a "
                "marker, a border, brightness), the model may use it as a shortcut.",
            )


def _masking(ctx: PageContext, f: Any) -> None:
    variants = f.evidence.get("variants")
    if not isinstance(variants, list) or not variants:
        return
    st.markdown(f"**Masking test** ({f.id}): AUC on masked images against the original")
    layout = f.evidence.get("anatomy_layout")
    if isinstance(layout, dict) and layout.get("layout"):
        graded = layout["layout"] == "centered"
        st.caption(
            f"Image layout: {layout['layout']} ({layout.get('resolved_from', '')}). "
            + (
                "A high AUC with the anatomy hidden is graded (radiograph-like images)."
                if graded
                else "A high AUC with the anatomy hidden is not graded: the masked images may "
                'still show anatomy (set anatomy_layout = "centered" in [masking_test] for '
                "radiograph-like images); the corner test applies."
            )
        )
    frame = _frame(variants)
    st.dataframe(frame, hide_index=True, width="stretch")
    names = [str(v.get("variant")) for v in variants if str(v.get("variant")) in MASKED_VARIANTS]
    _masked_examples(ctx, names)


def _masked_examples(ctx: PageContext, names: list[str]) -> None:
    if not names or ctx.thumbnail(0, max_px=16) is None:
        return
    labels = ctx.manifest["label"].to_numpy()
    st.markdown("What the model saw in each variant (one image per class):")
    for c, cname in enumerate(ctx.light.run.get("classes") or []):
        hits = (labels == c).nonzero()[0]
        if not len(hits):
            continue
        r = int(hits[0])
        cols = st.columns(1 + len(names))
        cols[0].image(ctx.thumbnail(r, max_px=128), caption=f"{cname}: original", width="stretch")
        for col, v in zip(cols[1:], names):
            col.image(ctx.thumbnail(r, max_px=128, variant=v), caption=v, width="stretch")


def _first_with(found: list[Any], key: str) -> Any:
    """The first finding whose evidence holds a non-empty list under ``key``, or None."""
    return next(
        (f for f in found if isinstance(f.evidence.get(key), list) and f.evidence[key]), None
    )


def render(ctx: PageContext) -> None:
    """Render the page."""
    st.header("Shortcuts")
    st.caption(
        "A shortcut is something other than the anatomy that predicts the label: the "
        "site or scanner, a text marker, the image border. A model that learns one "
        "fails where the shortcut does not hold."
    )
    found = findings_of(ctx.light, *CHECKS)
    # the masked AUCs recorded by training (a trained run's model card reads them cheaply)
    model = ctx.report.model if (ctx.info.get("train") or {}).get("masked_oof_auc") else None
    masked_table = next(
        (
            t
            for t in (model.tables if model else [])
            if t.title.startswith("Out-of-fold AUC on masked")
        ),
        None,
    )
    if not found and masked_table is None:
        ran = set((ctx.info.get("audit") or {}).get("checks_run") or [])
        missing(
            "No shortcut evidence in this run",
            "The shortcut checks ("
            + ", ".join(CHECKS)
            + ") did not run"
            + (" in this audit" if ran else "")
            + ". Run `medaudit audit "
            f"{ctx.path}` with a medaudit that has them (see `medaudit audit --list`); the "
            "masking test also needs the masked re-scoring written by `medaudit train`.",
        )
        return
    for f in found:
        finding(f)
    # the specific views, once each (every finding of a check carries the same tables)
    props = _first_with(found, "properties")
    if props is not None:
        st.subheader("Image properties")
        _properties(ctx, props)
    masking = _first_with(found, "variants")
    if masking is not None:
        st.subheader("Masking test")
        _masking(ctx, masking)
    if masked_table is not None and masking is None:  # training's own record, when no test ran
        show_table(masked_table)
        if not any(f.check == "masking_test" for f in found):
            _masked_examples(
                ctx, [v for v in MASKED_VARIANTS if v in {str(r[0]) for r in masked_table.rows}]
            )
