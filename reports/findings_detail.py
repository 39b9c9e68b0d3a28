"""Section 4, every finding in detail, with thumbnails of the images it flags.

Findings are rendered generically (title, message, evidence with method, n and
intervals, references, recommendation), so the findings of a new check appear
without code changes. Which images to show is read from the *shape* of the evidence,
not from the check's name:

* records with ``sample_id_a`` and ``sample_id_b`` (duplicate pairs): side by side;
* records with ``sample_id``, ``given_label`` and ``suggested_label`` (label issues):
  each image with the given and the suggested label;
* other records with ``sample_id`` (outliers, shortcut extremes, ...): each image with
  the record's first numbers as its caption;
* otherwise the finding's ``sample_ids``;
* findings about masked re-scoring (evidence naming a variant of
  :data:`audit.masking.MASKED_VARIANTS`): each image next to its masked variants.

The caps of :class:`reports.options.ReportOptions` bound the number of images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.findings import REFERENCES
from audit.masking import MASKED_VARIANTS
from reports._rundata import RunData
from reports.evidence import iter_records
from reports.model import FindingsSection, FindingView, Gallery, Thumb
from reports.options import ReportOptions

__all__ = ["build_findings"]

_ID_KEYS = {"sample_id", "sample_id_a", "sample_id_b", "patient_key", "study_key", "key"}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, Mapping) and "estimate" in value:
        return _short(value["estimate"])
    if isinstance(value, list):
        return ", ".join(_short(v) for v in value[:3])
    return str(value)


def _caption(record: Mapping[str, Any], n: int = 3) -> str:
    """The record's first ``n`` scalar (or interval) fields, ``key value``."""
    parts = []
    for k, v in record.items():
        if k in _ID_KEYS or v is None:
            continue
        if isinstance(v, Mapping) and "estimate" not in v:
            continue
        if isinstance(v, list) and (not v or isinstance(v[0], (dict, list))):
            continue
        parts.append(f"{k} {_short(v)}")
        if len(parts) == n:
            break
    return "; ".join(parts)


class _Budget:
    """Images left for the whole report."""

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, n: int) -> bool:
        if n > self.left:
            return False
        self.left -= n
        return True


def _mentions_masking(evidence: Any) -> bool:
    if isinstance(evidence, Mapping):
        return any(str(k) in MASKED_VARIANTS or _mentions_masking(v) for k, v in evidence.items())
    if isinstance(evidence, list):
        return any(_mentions_masking(v) for v in evidence)
    return isinstance(evidence, str) and evidence in MASKED_VARIANTS


def _galleries(f: Any, data: RunData, rows: dict[str, int], options: ReportOptions,
               budget: _Budget) -> list[Gallery]:
    if not data.run.has("images"):
        return []
    per = options.max_thumbnails_per_finding
    label_of = data.manifest["label_name"].astype(str).to_numpy()
    out: list[Gallery] = []

    def thumb(sid: str, caption: str, variant: str | None = None) -> Thumb:
        return Thumb(sample_id=sid, row=rows[sid], caption=caption, variant=variant)

    shown: list[str] = []
    for path, records in iter_records(f.evidence):
        keys = set().union(*(set(r) for r in records))
        if {"sample_id_a", "sample_id_b"} <= keys:
            cands = [r for r in records if r.get("sample_id_a") in rows and r.get("sample_id_b") in rows]
            groups, caps = [], []
            for r in cands[:per]:
                if not budget.take(2):
                    break
                a, b = str(r["sample_id_a"]), str(r["sample_id_b"])
                groups.append([thumb(a, f"{a} ({label_of[rows[a]]})"),
                               thumb(b, f"{b} ({label_of[rows[b]]})")])
                caps.append(_caption(r))
                shown += [a, b]
            if groups:
                out.append(Gallery("pairs", f"Image pairs ({path})", groups, caps, len(cands)))
            break
        if "sample_id" in keys:
            cands = [r for r in records if r.get("sample_id") in rows]
            label_issue = {"given_label", "suggested_label"} <= keys
            groups, caps = [], []
            for r in cands[:per]:
                if not budget.take(1):
                    break
                sid = str(r["sample_id"])
                if label_issue:
                    cap = f"given {r.get('given_label')} → suggested {r.get('suggested_label')}"
                    q = r.get("label_quality_score")
                    if q is not None:
                        cap += f" (label quality {_short(q)})"
                else:
                    cap = _caption(r) or f"label {label_of[rows[sid]]}"
                groups.append([thumb(sid, sid)])
                caps.append(cap)
                shown.append(sid)
            if groups:
                out.append(Gallery("label_issues" if label_issue else "images",
                                   f"Flagged images ({path})", groups, caps, len(cands)))
            break
    if not out:
        cands = [s for s in f.sample_ids if s in rows]
        groups, caps = [], []
        for sid in cands[:per]:
            if not budget.take(1):
                break
            groups.append([thumb(sid, sid)])
            caps.append(f"label {label_of[rows[sid]]}")
            shown.append(sid)
        if groups:
            out.append(Gallery("images", "Flagged images", groups, caps, len(cands)))
    if _mentions_masking(f.evidence):
        present = [v for v in MASKED_VARIANTS if v in set(data.run.masked_variants())] or \
            list(MASKED_VARIANTS)
        cands = shown or [s for s in f.sample_ids if s in rows] or list(rows)[:1]
        groups, caps = [], []
        for sid in cands[: max(1, per // 4)]:
            if not budget.take(1 + len(present)):
                break
            groups.append([thumb(sid, "original"),
                           *(thumb(sid, v, variant=v) for v in present)])
            caps.append(f"{sid} ({label_of[rows[sid]]}) and what each masked variant hides")
        if groups:
            out.append(Gallery("masked", "Masked variants the model was re-scored on", groups,
                               caps, len(cands)))
    return out


def build_findings(data: RunData, options: ReportOptions, *, reserved: int = 0) -> FindingsSection:
    """Build section 4 from a loaded run (pure).

    ``reserved`` images of :attr:`ReportOptions.max_thumbnails` are already used elsewhere
    in the report (the model card's masked examples).
    """
    rows = {str(s): i for i, s in enumerate(data.manifest["sample_id"].astype(str))}
    budget = _Budget(max(0, options.max_thumbnails - reserved))
    views = []
    for fid, f in zip(data.finding_ids, data.findings or []):
        views.append(FindingView(
            id=fid, check=f.check, severity=f.severity, title=f.title, message=f.message,
            recommendation=f.recommendation,
            references=[{"key": r, "text": REFERENCES.get(r, r)} for r in f.references],
            evidence=f.evidence, n_samples=len(f.sample_ids), sample_ids=list(f.sample_ids),
            galleries=_galleries(f, data, rows, options, budget)))
    audit = data.audit
    return FindingsSection(findings=views, skipped=list(audit.get("skipped") or []),
                           errors=list(audit.get("errors") or []))
