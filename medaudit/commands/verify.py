"""``medaudit verify RUN_DIR REPORT_JSON``: does a report still match its run directory?

Rebuilds the report content from the run directory with the options recorded in the
report, compares it field by field and checks the content SHA-256. Exit codes: 0 the
report matches; 5 it differs (the first differing field is named) or its hash was
edited; 2 bad input (not a report, no such file, an inconsistent run directory).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit verify``."""
    p = sub.add_parser("verify", help="check that a report.json matches its run directory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory")
    p.add_argument("report", type=Path, metavar="REPORT_JSON", help="a report.json of that run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``medaudit verify``."""
    from medaudit.exit_codes import EXIT_OK, EXIT_REPORT_MISMATCH
    from reports import verify_report

    result = verify_report(args.run_dir, args.report)
    print(("OK: " if result.ok else "MISMATCH: ") + result.message)
    return EXIT_OK if result.ok else EXIT_REPORT_MISMATCH
