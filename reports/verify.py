"""Verify a ``report.json`` against its run directory: rebuild the content, compare, name the first difference.

A report matches when (1) it follows the schema, (2) the content rebuilt from the run
directory with the report's own options equals the report's content field by field,
and (3) its ``content_sha256`` is the SHA-256 of that content. The HTML and PDF show the
same hash, so a matching ``report.json`` vouches for them too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.rundir import RunDir
from reports.build import build_report
from reports.canonical import content_sha256, normalize
from reports.options import ReportOptions
from reports.render_json import FORMAT_NAME, validate_report_json

__all__ = ["MSG_DIFFERS", "MSG_HASH", "MSG_MATCHES", "MSG_SCHEMA", "VerifyResult",
           "first_difference", "verify_report"]

MSG_MATCHES = "report matches the run directory (content SHA-256 {sha})"
MSG_DIFFERS = ("report differs from the run directory at {field}: the report has {found}, the "
               "run gives {expected}")
MSG_HASH = ("report content matches the run directory, but content_sha256 is {found} while the "
            "content hashes to {expected}: the hash was edited")
MSG_SCHEMA = "report does not follow reports/report.schema.json: {problem}"
MSG_NOT_A_REPORT = ("{path} is not a medaudit report.json (expected a JSON object with "
                    "format '{fmt}'); got {got}")


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_report`.

    Attributes
    ----------
    ok : bool
    message : str
        One line for a person.
    field : str or None
        JSON path of the first difference (``content.model.tables[2].rows[0][3].estimate``).
    """

    ok: bool
    message: str
    field: str | None = None


_MISSING = object()


def _show(v: Any) -> str:
    if v is _MISSING:
        return "nothing"
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def first_difference(found: Any, expected: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first place, in document order, where ``found`` differs from ``expected``.

    Returns
    -------
    tuple or None
        ``(json path, found value, expected value)``; None when equal.
    """
    if isinstance(expected, Mapping) and isinstance(found, Mapping):
        for k in expected:
            sub = f"{path}.{k}" if path else str(k)
            if k not in found:
                return sub, _MISSING, expected[k]
            d = first_difference(found[k], expected[k], sub)
            if d:
                return d
        for k in found:
            if k not in expected:
                return (f"{path}.{k}" if path else str(k)), found[k], _MISSING
        return None
    if isinstance(expected, list) and isinstance(found, list):
        for i, (a, b) in enumerate(zip(found, expected)):
            d = first_difference(a, b, f"{path}[{i}]")
            if d:
                return d
        if len(found) != len(expected):
            i = min(len(found), len(expected))
            return (f"{path}[{i}]", found[i] if i < len(found) else _MISSING,
                    expected[i] if i < len(expected) else _MISSING)
        return None
    if type(found) is not type(expected) or found != expected:
        # 1 and 1.0 are the same JSON number
        if isinstance(found, (int, float)) and isinstance(expected, (int, float)) and \
                not isinstance(found, bool) and not isinstance(expected, bool) and found == expected:
            return None
        return path, found, expected
    return None


def verify_report(run_dir: str | os.PathLike[str] | RunDir,
                  report_json: str | os.PathLike[str]) -> VerifyResult:
    """Check that ``report_json`` is what the run directory gives today.

    Parameters
    ----------
    run_dir : path-like or RunDir
    report_json : path-like
        A ``report.json`` written by :func:`reports.write_reports`.

    Returns
    -------
    VerifyResult

    Raises
    ------
    ValueError
        When the file is not a medaudit report (not JSON, or another format).
    FileNotFoundError
        When the file does not exist.
    """
    path = Path(report_json)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(MSG_NOT_A_REPORT.format(path=path, fmt=FORMAT_NAME,
                                                 got=f"invalid JSON ({err})")) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        got = f"format {doc.get('format')!r}" if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(MSG_NOT_A_REPORT.format(path=path, fmt=FORMAT_NAME, got=got))
    problems = validate_report_json(doc)
    if problems:
        return VerifyResult(False, MSG_SCHEMA.format(problem=problems[0]),
                            problems[0].split(":", 1)[0])
    content = doc["content"]
    options = ReportOptions.from_dict(content["options"])
    expected = normalize(build_report(run_dir, options).to_dict())
    diff = first_difference(content, expected)
    if diff is not None:
        field, found, exp = diff
        field = f"content.{field}"
        return VerifyResult(False, MSG_DIFFERS.format(field=field, found=_show(found),
                                                      expected=_show(exp)), field)
    sha = content_sha256(expected)
    if doc["content_sha256"] != sha:
        return VerifyResult(False, MSG_HASH.format(found=doc["content_sha256"], expected=sha),
                            "content_sha256")
    return VerifyResult(True, MSG_MATCHES.format(sha=sha))
