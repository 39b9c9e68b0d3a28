"""Write a run's reports (HTML, JSON, PDF): the ``report`` stage of a run directory.

Written into the run directory, reports are published as one transaction of the run
(:meth:`audit.rundir.RunDir.transaction`) and listed in ``run.json['report']``;
written elsewhere (``out``), they are plain files, each replaced atomically. File
names: ``report.html`` / ``report.json`` / ``report.pdf`` for the complete report
(audience ``all``), ``report/<audience>.<format>`` for one audience.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audit.rundir import RunDir, atomic_write
from reports.build import build_report
from reports.options import FORMATS, ReportOptions
from reports.render_html import render_assets, render_html
from reports.render_json import envelope, generator_info, render_json
from reports.render_pdf import pdf_backend, render_pdf
from reports.reproducibility import sha256_file

__all__ = ["WrittenReports", "report_relpath", "write_reports"]


def report_relpath(audience: str, fmt: str) -> str:
    """Where a report goes, relative to the output folder."""
    return f"report.{fmt}" if audience == "all" else f"report/{audience}.{fmt}"


@dataclass
class WrittenReports:
    """What :func:`write_reports` wrote.

    Attributes
    ----------
    paths : dict
        Format -> path of the written file.
    content_sha256 : str
        SHA-256 of the report content (the same for every format).
    seconds : dict
        Build, render and write time per step.
    """

    paths: dict[str, Path]
    content_sha256: str
    seconds: dict[str, float] = field(default_factory=dict)


def _formats(formats: Sequence[str]) -> list[str]:
    out = []
    for f in formats:
        f = f.strip().lower()
        if f not in FORMATS:
            raise ValueError(f"unknown report format {f!r}; valid formats: {', '.join(FORMATS)}")
        if f not in out:
            out.append(f)
    if not out:
        raise ValueError(f"no report format given; valid formats: {', '.join(FORMATS)}")
    return out


def write_reports(
    run_dir: str | os.PathLike[str] | RunDir,
    *,
    formats: Sequence[str] = FORMATS,
    options: ReportOptions | None = None,
    out: str | os.PathLike[str] | None = None,
) -> WrittenReports:
    """Build a run's report once and write it in each format.

    Parameters
    ----------
    run_dir : path-like or RunDir
        The run directory (ingested; trained and audited for the complete report).
    formats : sequence of {'html', 'json', 'pdf'}
    options : ReportOptions, optional
        Audience and caps.
    out : path-like, optional
        Output folder (default: the run directory, as a transaction of the run).

    Returns
    -------
    WrittenReports

    Raises
    ------
    ValueError
        For an unknown format.
    reports.render_pdf.PdfBackendUnavailable
        When ``'pdf'`` is asked for and WeasyPrint cannot be loaded (checked before
        anything is built).
    """
    fmts = _formats(formats)
    if "pdf" in fmts:
        pdf_backend()
    options = options or ReportOptions()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    report = build_report(run, options)
    seconds["build"] = round(time.perf_counter() - t0, 3)
    generator = generator_info()
    doc = envelope(report, generator)
    sha = doc["content_sha256"]
    texts: dict[str, bytes] = {}
    if "json" in fmts:
        texts["json"] = render_json(doc).encode("utf-8")
    if "html" in fmts or "pdf" in fmts:
        t1 = time.perf_counter()
        assets = render_assets(report, run)
        html = render_html(report, assets, generator=generator, content_sha256=sha)
        seconds["render_html"] = round(time.perf_counter() - t1, 3)
        if "html" in fmts:
            texts["html"] = html.encode("utf-8")
        if "pdf" in fmts:
            t2 = time.perf_counter()
            texts["pdf"] = render_pdf(html)
            seconds["render_pdf"] = round(time.perf_counter() - t2, 3)
    rel = {f: report_relpath(options.audience, f) for f in fmts}
    into_run = out is None or Path(out).resolve() == run.path.resolve()
    if into_run:
        with run.transaction("medaudit report") as staged:
            for f in fmts:
                _write(staged.file(rel[f]), texts[f])
            section = dict(staged.read_run_json().get("report") or {})
            outputs = dict(section.get("outputs") or {})
            for f in fmts:
                outputs[rel[f]] = {"format": f, "audience": options.audience,
                                   "content_sha256": sha, "sha256": sha256_file(staged.file(rel[f])),
                                   "bytes": staged.file(rel[f]).stat().st_size,
                                   "generated_at": generator["generated_at"]}
            staged.update_run_json({"report": {"outputs": dict(sorted(outputs.items())),
                                               "medaudit_version": generator["medaudit_version"]}})
        paths = {f: run.path / rel[f] for f in fmts}
    else:
        root = Path(out)  # type: ignore[arg-type]
        for f in fmts:
            _write(root / rel[f], texts[f])
        paths = {f: root / rel[f] for f in fmts}
    seconds["total"] = round(time.perf_counter() - t0, 3)
    return WrittenReports(paths=paths, content_sha256=sha, seconds=seconds)


def _write(path: Path, data: bytes) -> None:
    def put(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, put)
