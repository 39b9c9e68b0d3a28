"""Page 8, Report: download the run's HTML / JSON / PDF reports, or build them in memory.

Reports already written by ``medaudit report`` (listed in ``run.json['report']``) are
offered as they are. Otherwise the page renders one with :func:`reports.write_reports`
into a temporary folder and offers its bytes: the run directory is never written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from dashboard.state import PageContext
from reports import AUDIENCES, FORMATS, PdfBackendUnavailable, ReportOptions, write_reports

__all__ = ["MIME", "render"]

MIME = {"html": "text/html", "json": "application/json", "pdf": "application/pdf"}


def _written(ctx: PageContext) -> list[tuple[str, dict, Path]]:
    outputs = (ctx.info.get("report") or {}).get("outputs") or {}
    root = ctx.path.resolve()
    out = []
    for rel, meta in sorted(outputs.items()):
        p = (ctx.path / rel).resolve()
        if root in p.parents and p.is_file():  # never follow a path out of the run
            out.append((rel, meta, p))
    return out


def render(ctx: PageContext) -> None:
    """Render the page."""
    st.header("Report")
    st.caption(
        "The audit as a document: HTML to read and share, JSON for tools (with a "
        "content hash `medaudit verify` checks), PDF for a submission file."
    )
    written = _written(ctx)
    if written:
        st.subheader("Reports written for this run")
        for rel, meta, p in written:
            fmt = str(meta.get("format") or p.suffix.lstrip("."))
            c1, c2 = st.columns([1, 3])
            c1.download_button(
                f"Download {rel}",
                p.read_bytes(),
                file_name=p.name,
                mime=MIME.get(fmt, "application/octet-stream"),
                key=f"dl-{rel}",
                width="stretch",
            )
            c2.caption(
                f"{meta.get('audience', 'all')} audience · {meta.get('bytes', 0):,} bytes · "
                f"generated {meta.get('generated_at', '?')} · content SHA-256 "
                f"`{str(meta.get('content_sha256', ''))[:16]}…`"
            )
        st.caption(
            "If the run was audited again after these were written, build a fresh one "
            "below or run `medaudit report RUN_DIR`."
        )
    else:
        st.info(
            f"No report has been written for this run yet (`medaudit report {ctx.path}` "
            "writes them into the run). You can build one here without writing to the run."
        )
    st.subheader("Build a report now")
    c1, c2 = st.columns(2)
    audience = c1.selectbox(
        "Audience",
        AUDIENCES,
        key="rep-audience",
        help="all sections, or those a clinician, a reviewer or a regulatory file needs",
    )
    fmt = c2.selectbox("Format", FORMATS, key="rep-format")
    if st.button("Build", key="rep-build"):
        with st.spinner("Building the report…"), tempfile.TemporaryDirectory() as tmp:
            try:
                res = write_reports(
                    ctx.path, formats=[fmt], options=ReportOptions(audience=audience), out=tmp
                )
            except PdfBackendUnavailable as err:
                st.error(f"No PDF here: {err}")
                return
            st.session_state["rep-built"] = (
                fmt,
                audience,
                res.paths[fmt].read_bytes(),
                res.content_sha256,
            )
    built = st.session_state.get("rep-built")
    if built is not None:
        fmt_b, aud_b, data, sha = built
        name = f"report-{aud_b}.{fmt_b}" if aud_b != "all" else f"report.{fmt_b}"
        st.download_button(
            f"Download {name} ({len(data):,} bytes)",
            data,
            file_name=name,
            mime=MIME[fmt_b],
            key="rep-download",
        )
        st.caption(f"content SHA-256 `{sha}`")
