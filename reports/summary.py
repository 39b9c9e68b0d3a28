"""Section 1, the summary for clinicians: every check with a traffic light and two sentences.

Every check appears, whatever happened to it: checks with a critical or warning
finding, checks that found nothing to act on, checks skipped because the run lacks
their evidence, checks that failed with an error, and registered checks this audit
did not run. Each line says what the result means for using the data or the model,
and what to do.
"""

from __future__ import annotations

import re

from audit.findings import SEVERITIES, Finding
from audit.registry import registry
from reports._rundata import RunData
from reports.model import CheckRow, Summary

__all__ = ["STATUS_LABELS", "build_summary", "first_sentences"]

#: How each status reads in the table (colour is never the only cue).
STATUS_LABELS: dict[str, str] = {
    "failed": "could not run",
    "critical": "act before use",
    "warning": "caution",
    "ok": "no action needed",
    "skipped": "not evaluated",
    "not_run": "not run",
}
MSG_OK = "This check ran and found nothing that needs action."
ACT_OK = "Nothing to do."
MSG_INFO = "For information: nothing here needs action."
MSG_SKIPPED = ("Not evaluated: the run lacks what this check needs ({reason}), so the audit says "
               "nothing about it.")
ACT_SKIPPED = "Provide that evidence and audit again, or treat this aspect as unknown."
MSG_FAILED = "This check failed with an error, so this aspect of the data was not examined."
ACT_FAILED = "Fix the error named in the findings and audit again; until then treat it as not done."
MSG_NOT_RUN = "This audit did not run this check."
ACT_NOT_RUN = "Run the audit with every check to cover it."
MSG_NOT_AUDITED = "The run has not been audited yet: no check ran."

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def first_sentences(text: str, n: int = 2, *, max_chars: int = 320) -> str:
    """The first ``n`` sentences of ``text`` (at most ``max_chars``, cut at a word)."""
    parts = _SENTENCE.split(" ".join(text.split()))
    out = " ".join(parts[:n])
    if len(out) > max_chars:
        out = out[:max_chars].rsplit(" ", 1)[0] + " …"
    return out


def _row_for(check: str, description: str, findings: list[tuple[str, Finding]], *,
             ran: bool, skipped: str | None, error: str | None) -> CheckRow:
    counts = {s: sum(f.severity == s for _, f in findings) for s in SEVERITIES}
    ids = [i for i, _ in findings]
    if error is not None:
        return CheckRow(check, description, "failed", f"Check {check} could not run",
                        MSG_FAILED, ACT_FAILED, counts, ids)
    if skipped is not None:
        return CheckRow(check, description, "skipped", "Not evaluated by this run",
                        MSG_SKIPPED.format(reason=skipped), ACT_SKIPPED, counts, ids)
    if not ran:
        return CheckRow(check, description, "not_run", "Not run by this audit", MSG_NOT_RUN,
                        ACT_NOT_RUN, counts, ids)
    worst = next((f for _, f in findings if f.severity in ("critical", "warning")), None)
    if worst is None:
        info = next((f for _, f in findings if f.severity == "info"), None)
        if info is not None:
            return CheckRow(check, description, "ok", info.title,
                            f"{first_sentences(info.message, 1)} {MSG_INFO}", ACT_OK, counts, ids)
        top = findings[0][1] if findings else None
        return CheckRow(check, description, "ok", top.title if top else "No problem found",
                        MSG_OK, ACT_OK, counts, ids)
    return CheckRow(check, description, worst.severity, worst.title,  # type: ignore[arg-type]
                    first_sentences(worst.message), first_sentences(worst.recommendation),
                    counts, ids)


def build_summary(data: RunData) -> Summary:
    """Build section 1 from a loaded run (pure)."""
    audit = data.audit
    specs = registry()
    if data.findings is None and not audit:
        rows = [_row_for(n, s.description, [], ran=False, skipped=None, error=None)
                for n, s in specs.items()]
        return Summary(audited=False, complete=None, verdict=MSG_NOT_AUDITED,
                       counts={s: 0 for s in SEVERITIES}, checks=rows)
    ran = set(audit.get("checks_run") or [])
    skipped = {s["check"]: s.get("reason", "") for s in audit.get("skipped") or []}
    errors = {e["check"]: e.get("error", "") for e in audit.get("errors") or []}
    findings = list(zip(data.finding_ids, data.findings or []))
    names = list(specs)
    for extra in [*sorted(ran), *skipped, *errors, *(f.check for _, f in findings)]:
        if extra not in names:
            names.append(extra)  # a check of another medaudit version: shown all the same
    rows = []
    for n in names:
        own = [(i, f) for i, f in findings if f.check == n]
        desc = specs[n].description if n in specs else ""
        rows.append(_row_for(n, desc, own, ran=n in ran or bool(own), skipped=skipped.get(n),
                             error=errors.get(n)))
    order = {s: i for i, s in enumerate(("failed", "critical", "warning", "ok", "skipped",
                                         "not_run"))}
    rows.sort(key=lambda r: order[r.status])
    counts = {s: sum(f.severity == s for _, f in findings) for s in SEVERITIES}
    complete = bool(audit.get("complete", not errors))
    parts = [f"{counts['critical']} critical and {counts['warning']} warning finding(s) "
             f"from {len(ran)} check(s)"]
    if skipped:
        parts.append(f"{len(skipped)} check(s) not evaluated for lack of evidence")
    if errors:
        parts.append(f"{len(errors)} check(s) failed, so the audit is incomplete")
    verdict = "; ".join(parts) + "."
    if counts["critical"]:
        verdict += " Do not use this dataset or model before the critical findings are resolved."
    elif counts["warning"]:
        verdict += " Usable with caution: read the warnings and what to do about them."
    elif not errors:
        verdict += " No finding needs action."
    return Summary(audited=True, complete=complete, verdict=verdict, counts=counts, checks=rows,
                   audit_finished_at=audit.get("finished_at"))
