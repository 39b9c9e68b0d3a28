"""Render a report as ``report.json``: the content, its SHA-256 and who generated it.

Layout (``reports/report.schema.json``)::

    {"format": "medaudit-report", "schema_version": "1.0",
     "content_sha256": "<SHA-256 of the canonical JSON of content>",
     "generator": {"medaudit_version", "generated_at", "environment": {...}},
     "content": {... Report.to_dict() ...}}

``content`` is the same content as the HTML and PDF (every row of every table, every
sample id); images are referred to by sample id and row, not embedded. ``generator``
is not part of the verified content: it describes the machine and the moment.
"""

from __future__ import annotations

import json
import time
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from reports.canonical import content_sha256, normalize
from reports.model import Report

__all__ = ["FORMAT_NAME", "SCHEMA_PATH", "envelope", "generator_info", "load_schema",
           "render_json", "validate_report_json"]

FORMAT_NAME = "medaudit-report"
SCHEMA_PATH = Path(__file__).parent / "report.schema.json"
#: Packages whose versions describe the report environment.
ENVIRONMENT_PACKAGES = ("numpy", "pandas", "scikit-learn", "cleanlab", "netcal", "torch", "timm",
                        "jinja2", "matplotlib", "weasyprint", "pydicom")


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def generator_info() -> dict[str, Any]:
    """``generator`` block: medaudit's version, the time, the package versions of this machine."""
    import platform

    return {"medaudit_version": _version("medaudit"),
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": {"python": platform.python_version(),
                            **{p: _version(p) for p in ENVIRONMENT_PACKAGES}}}


def envelope(report: Report, generator: dict[str, Any]) -> dict[str, Any]:
    """The ``report.json`` document of ``report``."""
    content = normalize(report.to_dict())
    return {"format": FORMAT_NAME, "schema_version": report.schema_version,
            "content_sha256": content_sha256(content), "generator": generator,
            "content": content}


def render_json(document: dict[str, Any]) -> str:
    """``report.json`` text (indented, UTF-8, NaN refused)."""
    return json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


@cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema of ``report.json`` (``reports/report.schema.json``)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_report_json(document: Any) -> list[str]:
    """Problems of ``document`` against the schema (empty when valid).

    Each problem names the JSON path, e.g. ``content.summary.checks[0].status: 'red' is
    not one of [...]``.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    out = []
    for err in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"{path.lstrip('.') or '(top level)'}: {err.message[:300]}")
    return out
