"""Reading configuration files (TOML) for the CLI; only ``medaudit/`` reads files of settings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_audit_config"]


def load_audit_config(path: Path) -> dict[str, dict[str, Any]]:
    """Audit settings: one TOML table per check, e.g. ``[label_issues]``.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When it is not valid TOML or a top-level entry is not a table.
    """
    if not path.is_file():
        raise FileNotFoundError(f"audit config {path} not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"audit config {path} is not UTF-8 text ({err.reason} at byte "
                         f"{err.start}); it must be a TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"audit config {path} is not valid TOML: {err}") from None
    bad = [k for k, v in data.items() if not isinstance(v, dict)]
    if bad:
        raise ValueError(
            f"audit config {path}: top-level keys {bad} must be tables named after checks, "
            "e.g. [label_issues]"
        )
    return data
