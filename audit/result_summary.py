"""A traffic-light summary of an :class:`audit.engine.AuditResult`, as text and as HTML.

One row per check that was asked for, most urgent first: its status (the worst
severity among its findings, or ``failed`` / ``skipped``), a headline (the worst
finding's title, the error, or why it was skipped), how many findings it made
and how many samples they name. :func:`summary_text` and :func:`summary_html`
render the same rows; the HTML is one small self-contained table (inline
styles, no scripts, no external resources) meant for Jupyter's ``_repr_html_``
until the report model of :mod:`reports` replaces it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from audit.findings import SEVERITIES, Finding, severity_rank


class AuditResult(Protocol):
    """What the summary reads of :class:`audit.engine.AuditResult` (which imports this module)."""

    findings: list[Finding]
    skipped: Sequence[Mapping[str, str]]
    errors: Sequence[Mapping[str, str]]
    check_configs: Mapping[str, Any]

__all__ = ["STATUS_COLORS", "STATUS_ORDER", "CheckStatus", "check_statuses", "summary_html", "summary_text"]

#: Traffic-light colour of each status (failed checks are as loud as critical findings:
#: an unfinished part of an audit must not look clean).
STATUS_COLORS: dict[str, str] = {
    "critical": "#c62828",
    "failed": "#6a1b9a",
    "warning": "#ef8f00",
    "info": "#1565c0",
    "pass": "#2e7d32",
    "skipped": "#9e9e9e",
}


@dataclass(frozen=True)
class CheckStatus:
    """One row of the summary.

    Attributes
    ----------
    check : str
        Registry name.
    status : str
        ``critical`` / ``warning`` / ``info`` / ``pass`` (worst finding),
        ``failed`` (the check raised) or ``skipped`` (evidence missing).
    headline : str
        The worst finding's title, the error, or the reason for skipping.
    n_findings : int
        Findings the check made (a failed check: its one "could not run" finding).
    n_samples : int
        Distinct sample ids its findings name.
    """

    check: str
    status: str
    headline: str
    n_findings: int
    n_samples: int


#: Row order of the summary: the most urgent first (ties keep the run order).
STATUS_ORDER: tuple[str, ...] = ("critical", "failed", "warning", "info", "pass", "skipped")


def check_statuses(result: AuditResult) -> list[CheckStatus]:
    """The summary rows of ``result``, one per check, most urgent first (:data:`STATUS_ORDER`)."""
    errors = {e["check"]: e["error"] for e in result.errors}
    skipped = {s["check"]: s["reason"] for s in result.skipped}
    order = list(result.check_configs) or list(
        dict.fromkeys([*(f.check for f in result.findings), *skipped]))
    for name in [*(f.check for f in result.findings), *errors, *skipped]:
        if name not in order:
            order.append(name)
    rows = []
    for name in order:
        found = sorted((f for f in result.findings if f.check == name),
                       key=lambda f: severity_rank(f.severity))
        n_samples = len({s for f in found for s in f.sample_ids})
        if name in errors:
            rows.append(CheckStatus(name, "failed", errors[name], len(found), n_samples))
        elif name in skipped:
            rows.append(CheckStatus(name, "skipped", skipped[name], 0, 0))
        elif found:
            rows.append(CheckStatus(name, found[0].severity, found[0].title, len(found), n_samples))
        else:
            rows.append(CheckStatus(name, "pass", "no findings", 0, 0))
    return sorted(rows, key=lambda r: STATUS_ORDER.index(r.status))


def _counts(result: AuditResult) -> str:
    counts = {s: sum(f.severity == s for f in result.findings) for s in SEVERITIES}
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def summary_text(result: AuditResult) -> str:
    """The summary as plain text, one line per check.

    Examples
    --------
    >>> from audit.engine import AuditResult
    >>> print(summary_text(AuditResult(skipped=[{"check": "outliers", "reason": "no images"}])))
    audit: 0 checks ran, 1 skipped, 0 failed; findings: 0 critical, 0 warning, 0 info, 0 pass
      SKIPPED   outliers: no images
    """
    rows = check_statuses(result)
    n_run = sum(r.status not in ("skipped",) for r in rows)
    lines = [
        f"audit: {n_run} checks ran, {len(result.skipped)} skipped, {len(result.errors)} failed; "
        f"findings: {_counts(result)}"
    ]
    for r in rows:
        samples = f" ({r.n_samples} samples)" if r.n_samples else ""
        lines.append(f"  {r.status.upper():<9} {r.check}: {r.headline}{samples}")
    mq = getattr(result, "model_quality", None)
    if mq:
        lines.append(f"model quality: {mq['verdict']} ({mq['reason']})"
                     + ("; model-based findings are at most warning" if mq["verdict"] == "weak"
                        else ""))
    if result.errors:
        lines.append("the audit is incomplete: call raise_for_errors() to stop on it")
    return "\n".join(lines)


def summary_html(result: AuditResult) -> str:
    """The summary as one self-contained HTML table (inline styles only).

    The one function to swap for the report model's rendering when it exists.
    """
    esc = html.escape
    body = []
    for r in check_statuses(result):
        color = STATUS_COLORS.get(r.status, "#000")
        body.append(
            "<tr>"
            f'<td style="text-align:center"><span style="color:{color};font-size:1.3em" '
            f'title="{esc(r.status)}">&#9679;</span></td>'
            f"<td><code>{esc(r.check)}</code></td>"
            f'<td style="color:{color};font-weight:bold">{esc(r.status)}</td>'
            f"<td>{esc(r.headline)}</td>"
            f'<td style="text-align:right">{r.n_findings}</td>'
            f'<td style="text-align:right">{r.n_samples}</td>'
            "</tr>"
        )
    incomplete = (
        f'<p style="color:{STATUS_COLORS["failed"]}"><b>Incomplete audit:</b> '
        f"{len(result.errors)} check(s) failed; <code>raise_for_errors()</code> raises.</p>"
        if result.errors else ""
    )
    return (
        '<div class="medaudit-result">'
        f"<p><b>medaudit audit</b>: {esc(_counts(result))}</p>{incomplete}"
        '<table style="border-collapse:collapse">'
        "<thead><tr><th></th><th>check</th><th>status</th><th>headline</th>"
        "<th>findings</th><th>samples</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        "<p><small>Details: <code>result.findings_frame()</code>, "
        "<code>result.table(check)</code>, <code>result.summary()</code>.</small></p>"
        "</div>"
    )
