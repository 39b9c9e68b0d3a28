"""``medaudit run``: ingest, train, audit and report in one go."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaudit.commands.ingest import add_ingest_arguments, ingest_from_args, print_ingest_summary

__all__ = ["add_parser", "add_stage_arguments", "run", "run_stages"]


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    """Training and audit options shared by ``run`` and ``demo``."""
    from medaudit.commands.train import add_train_arguments

    add_train_arguments(parser)
    stages = parser.add_argument_group("stages")
    stages.add_argument("--no-train", action="store_true", help="stop after ingestion")
    stages.add_argument("--no-audit", action="store_true", help="do not run the audit checks")
    stages.add_argument("--no-report", action="store_true",
                        help="do not write report.html / report.json / report.pdf at the end")
    stages.add_argument("--checks", help="comma-separated audit checks (default: all)")
    stages.add_argument("--audit-config", dest="config", type=Path,
                        help="TOML file of audit settings, one [section] per check")


def run_stages(args: argparse.Namespace, out: Path) -> int:
    """Ingest (from ``args``), then train, audit and write the reports unless switched off."""
    from medaudit.commands.executor_options import executor_from_args

    executor = None if args.no_train else executor_from_args(args)  # fails before ingesting
    summary = ingest_from_args(args, out)
    print_ingest_summary(summary)
    if not args.no_train:
        from medaudit.commands.train import train_from_args

        trained = train_from_args(summary.run.path, args, executor=executor)
        print(trained.text)
    code = 0
    if not args.no_audit:
        from medaudit.commands.audit import audit_and_print

        code = audit_and_print(summary.run.path, args)  # 3 (--fail-on) or 4 (incomplete) pass on
    if not args.no_report:
        from medaudit.commands.report import report_and_print

        report_and_print(summary.run.path, formats=["html", "json", "pdf"], pdf_optional=True)
    print(f"run directory: {summary.run.path}")
    return code


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit run``."""
    p = sub.add_parser("run", help="ingest, train and audit in one command", description=__doc__)
    add_ingest_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    add_stage_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``medaudit run``."""
    return run_stages(args, args.out)
