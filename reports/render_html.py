"""Render a :class:`reports.model.Report` as one self-contained HTML file.

Figures are inline SVG, thumbnails PNG data URIs, the style sheet is inline, and the
page has no script at all: it opens from a USB stick on a hospital PC without a
network. The same HTML, with its print style sheet, is what the PDF renderer lays out.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.rundir import RunDir
from reports.evidence import evidence_view, is_estimate
from reports.figures import render_figure
from reports.model import FigureSpec, Report, Table
from reports.options import ReportOptions
from reports.summary import STATUS_LABELS
from reports.thumbnails import thumbnail_uri

__all__ = ["SECTION_TITLES", "Assets", "fmt_cell", "render_assets", "render_html", "show_table"]

TEMPLATES = Path(__file__).parent / "templates"
#: Section headings.
SECTION_TITLES: dict[str, str] = {
    "summary": "Summary for clinicians",
    "dataset": "Dataset (datasheet)",
    "model": "Model and evaluation (model card)",
    "findings": "Findings in detail",
    "regulatory": "Regulatory mapping",
    "reproducibility": "Reproducibility",
}
NONE_TEXT = "–"


def fmt_number(v: float | int) -> str:
    """A number for reading: integers with thousands separators, others with 4 significant digits."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if not np.isfinite(v):
        return NONE_TEXT
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"


def _fmt_interval(d: dict[str, Any]) -> str:
    est = d.get("estimate")
    if est is None:
        return "not estimable"
    lo, hi = d.get("ci_low"), d.get("ci_high")
    if lo is None or hi is None:
        return f"{fmt_number(est)} (no interval)"
    return f"{fmt_number(est)} [{fmt_number(lo)}, {fmt_number(hi)}]"


def fmt_cell(v: Any) -> tuple[str, str | None]:
    """``(text, method)`` of a table cell; ``method`` is set for intervals."""
    if v is None:
        return NONE_TEXT, None
    if is_estimate(v):
        return _fmt_interval(v), str(v.get("method") or "") or None
    if isinstance(v, (int, float)):
        return fmt_number(v), None
    return str(v), None


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or is_estimate(v)


@dataclass
class ShownCell:
    """A formatted cell: text, footnote mark of its interval method, and whether numeric."""

    text: str
    mark: str = ""
    numeric: bool = False


@dataclass
class ShownTable:
    """A table as displayed: formatted, capped, with its interval methods as footnotes.

    Attributes
    ----------
    numeric : list of bool
        Per column: every shown cell is a number or an interval (right-aligned).
    methods : list of (str, str)
        ``(mark, method)`` footnotes of the intervals.
    """

    title: str
    columns: list[str]
    rows: list[list[ShownCell]]
    note: str
    numeric: list[bool] = field(default_factory=list)
    methods: list[tuple[str, str]] = field(default_factory=list)
    n_rows: int = 0


def show_table(table: Table, max_rows: int | None = None) -> ShownTable:
    """Format ``table`` for display (the first ``max_rows`` rows; all when None)."""
    marks: dict[str, str] = {}
    rows = table.rows if max_rows is None else table.rows[:max_rows]
    shown = []
    for r in rows:
        cells = []
        for v in r:
            text, method = fmt_cell(v)
            mark = ""
            if method:
                if method not in marks:
                    marks[method] = string.ascii_lowercase[len(marks) % 26]
                mark = marks[method]
            cells.append(ShownCell(text, mark, _is_number(v)))
        shown.append(cells)
    numeric = [bool(shown) and all(row[j].numeric or row[j].text == NONE_TEXT
                                   for row in shown if j < len(row))
               and any(row[j].numeric for row in shown if j < len(row))
               for j in range(len(table.columns))]
    note = table.note
    if len(table.rows) > len(rows):
        more = f"first {len(rows)} of {len(table.rows):,} rows shown; every row is in report.json"
        note = f"{note}; {more}" if note else more
    return ShownTable(table.title, list(table.columns), shown, note, numeric,
                      [(mark, m) for m, mark in marks.items()], len(table.rows))


@dataclass
class Assets:
    """What the renderers embed, drawn once per report: figures (SVG) and thumbnails (URIs)."""

    figures: dict[str, str] = field(default_factory=dict)
    thumbs: dict[str, str] = field(default_factory=dict)


def thumb_key(row: int, variant: str | None) -> str:
    """Key of a thumbnail in :attr:`Assets.thumbs`."""
    return f"{row}:{variant or ''}"


def _figures(report: Report) -> list[FigureSpec]:
    out: list[FigureSpec] = []
    if report.dataset:
        out += report.dataset.figures
    if report.model:
        out += report.model.figures
    return out


def render_assets(report: Report, run: RunDir | None) -> Assets:
    """Draw every figure and thumbnail of ``report`` once.

    Parameters
    ----------
    report : Report
    run : RunDir, optional
        Where the thumbnails are read from (``images.npy``, memory-mapped); without it
        the galleries are left out.
    """
    assets = Assets()
    for spec in _figures(report):
        assets.figures[spec.id] = render_figure(spec)
    galleries = [g for f in (report.findings.findings if report.findings else [])
                 for g in f.galleries] + (report.model.galleries if report.model else [])
    if run is None or not galleries or not run.has("images"):
        return assets
    images = run.read_array("images", mmap=True)
    max_px = int(report.options.get("thumbnail_px", ReportOptions.thumbnail_px))
    for g in galleries:
        for group in g.groups:
            for t in group:
                key = thumb_key(t.row, t.variant)
                if key not in assets.thumbs:
                    assets.thumbs[key] = thumbnail_uri(np.asarray(images[t.row]), max_px=max_px,
                                                       variant=t.variant)
    return assets


def render_html(report: Report, assets: Assets, *, generator: dict[str, Any],
                content_sha256: str) -> str:
    """The report as one HTML document (UTF-8 text).

    Parameters
    ----------
    report : Report
    assets : Assets
        From :func:`render_assets`.
    generator : dict
        ``report.json``'s ``generator`` block (version, time, environment).
    content_sha256 : str
        SHA-256 of the report content (shown so a reader can match HTML, PDF and JSON).

    Returns
    -------
    str
        The document; its print style sheet lays out the PDF (:mod:`reports.render_pdf`).
    """
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.globals.update(show_table=show_table, evidence_view=evidence_view, fmt_cell=fmt_cell,
                       thumb_key=thumb_key, SECTION_TITLES=SECTION_TITLES,
                       STATUS_LABELS=STATUS_LABELS)
    options = ReportOptions.from_dict(report.options)
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    return env.get_template("report.html.j2").render(
        r=report, assets=assets, gen=generator, sha=content_sha256, options=options, css=css)
