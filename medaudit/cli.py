"""The ``medaudit`` command line.

Each subcommand lives in its own module under :mod:`medaudit.commands`, exposing
``add_parser(subparsers)`` and ``run(args) -> int``; they are listed here by hand.
Exit codes: 0 success, 1 unexpected failure, 2 bad input the user can fix.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = [
    "EXIT_AUDIT_INCOMPLETE",
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_FINDINGS_AT_FAIL_ON",
    "EXIT_OK",
    "PARAMETER_FLAGS",
    "build_parser",
    "main",
    "to_cli_wording",
]

from medaudit.exit_codes import (
    EXIT_AUDIT_INCOMPLETE,
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_FINDINGS_AT_FAIL_ON,
    EXIT_OK,
)

#: Library messages name parameters; on the command line they are flags. Longest first.
PARAMETER_FLAGS: dict[str, str] = {
    "pass overwrite=True": "pass --overwrite",
    "choose a new output directory": "choose a new --out",
    "pass class_names": "pass --classes",
    "class_names=": "--classes ",
}


def to_cli_wording(message: str) -> str:
    """``message`` with parameter names replaced by the flags that set them.

    Ingestion's parameters come from :data:`PARAMETER_FLAGS`, training's
    (``TrainConfig.lr``, ``precision='fp32'``) from the training options
    (:func:`medaudit.commands.train.reword_for_cli`).
    """
    from medaudit.commands.train import reword_for_cli

    for param, flag in sorted(PARAMETER_FLAGS.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(param, flag)
    return reword_for_cli(message)


def _command_modules() -> list[ModuleType]:
    from medaudit.commands import audit, dashboard, demo, ingest, report, run, train, verify

    return [ingest, train, audit, run, demo, report, verify, dashboard]


def _describe_os_error(err: OSError) -> str:
    """One line naming the file and what went wrong (``str(OSError)`` may lack either)."""
    if err.filename is None or not err.strerror:
        return to_cli_wording(" ".join(str(err).split()))
    where = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 else "")
    return f"{where}: {err.strerror.lower()}; check the path and its permissions"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="medaudit",
        description="Audit a medical-imaging dataset and the models trained on it.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        module.add_parser(sub)
    for subparser in sub.choices.values():  # -q / -v also after the subcommand
        subparser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                               help="only warnings and errors")
        subparser.add_argument("-v", "--verbose", action="store_true",
                               default=argparse.SUPPRESS, help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medaudit`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    from audit.transaction import RunDirBusyError

    try:
        return int(args.func(args))
    except (ValueError, TypeError, RunDirBusyError) as err:
        # Bad input the user can fix: one clear message, no traceback.
        print(f"medaudit {args.command}: error: {to_cli_wording(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        # A path that is missing, a directory, not writable, ...: name it, no traceback.
        print(f"medaudit {args.command}: error: {_describe_os_error(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"medaudit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
