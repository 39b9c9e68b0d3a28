"""``medaudit report``: write a run's reports (HTML, JSON, PDF) for one audience or all.

Renders from the run directory alone (no retraining; images come from the run's image
cache). Written into the run directory (the default), the reports are published as one
transaction of the run and listed in ``run.json['report']``; ``--out DIR`` writes them
elsewhere. Exit codes: 0 written, 2 bad input (no run directory, an unknown format,
PDF asked for without WeasyPrint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "add_report_option_arguments", "options_from_args", "report_and_print",
           "run"]


def _formats(value: str) -> list[str]:
    return [f.strip().lower() for f in value.split(",") if f.strip()]


def add_report_option_arguments(p: argparse.ArgumentParser) -> None:
    """The size caps of a report (``report`` only; ``run`` and ``demo`` use the defaults)."""
    from reports import ReportOptions

    g = p.add_argument_group("size")
    g.add_argument("--thumbnail-px", type=int, default=ReportOptions.thumbnail_px,
                   help="longest side of a thumbnail (default: %(default)s)")
    g.add_argument("--max-thumbnails", type=int, default=ReportOptions.max_thumbnails,
                   help="images in the whole report (default: %(default)s)")
    g.add_argument("--max-thumbnails-per-finding", type=int,
                   default=ReportOptions.max_thumbnails_per_finding,
                   help="images (or pairs) per finding (default: %(default)s)")
    g.add_argument("--max-table-rows", type=int, default=ReportOptions.max_table_rows,
                   help="rows of an evidence table shown in HTML/PDF; report.json has all "
                   "(default: %(default)s)")


def options_from_args(args: argparse.Namespace) -> Any:
    """:class:`reports.ReportOptions` from the parsed flags."""
    from reports import ReportOptions

    return ReportOptions(audience=args.audience, thumbnail_px=args.thumbnail_px,
                         max_thumbnails=args.max_thumbnails,
                         max_thumbnails_per_finding=args.max_thumbnails_per_finding,
                         max_table_rows=args.max_table_rows)


def report_and_print(run_dir: Path, *, formats: list[str], options: Any = None,
                     out: Path | None = None, pdf_optional: bool = False) -> int:
    """Write the reports and print their paths; return the exit code.

    With ``pdf_optional`` (``run`` and ``demo``), a missing PDF backend drops the PDF with
    a note instead of failing.
    """
    from reports import PdfBackendUnavailable, write_reports
    from reports.render_pdf import pdf_backend

    if pdf_optional and "pdf" in formats:
        try:
            pdf_backend()
        except PdfBackendUnavailable as err:
            print(f"report: no PDF ({err})", file=sys.stderr)
            formats = [f for f in formats if f != "pdf"]
    written = write_reports(run_dir, formats=formats, options=options, out=out)
    for fmt, path in written.paths.items():
        print(f"report ({fmt}): {path}")
    print(f"report content SHA-256: {written.content_sha256} "
          f"(check it with: medaudit verify {run_dir} {written.paths.get('json', 'report.json')})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit report``."""
    from reports import AUDIENCES

    p = sub.add_parser("report", help="write the reports of a run (HTML, JSON, PDF)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory (ingested; "
                   "trained and audited for the complete report)")
    p.add_argument("--format", dest="formats", type=_formats, default=["html", "json", "pdf"],
                   metavar="html,json,pdf", help="comma-separated formats (default: all three)")
    p.add_argument("--audience", choices=list(AUDIENCES), default="all",
                   help="all sections (default), or those of one audience: clinician (summary, "
                   "dataset, model), reviewer (no regulatory mapping), regulatory (everything, "
                   "mapping first)")
    p.add_argument("--out", type=Path, help="output folder (default: the run directory)")
    add_report_option_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``medaudit report``."""
    from medaudit.exit_codes import EXIT_BAD_INPUT
    from reports import PdfBackendUnavailable

    if not (args.run_dir / "manifest.parquet").is_file():
        raise ValueError(f"{args.run_dir} is not an ingested run directory (no manifest.parquet); "
                         "run `medaudit ingest` or `medaudit run` first")
    try:
        return report_and_print(args.run_dir, formats=args.formats, options=options_from_args(args),
                                out=args.out)
    except PdfBackendUnavailable as err:
        print(f"medaudit report: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
