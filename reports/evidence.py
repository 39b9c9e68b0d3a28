"""Any finding's evidence as scalars and tables (pure; used by the renderers and the dashboard).

Checks put what they like into ``Finding.evidence`` (JSON: numbers, strings, intervals,
records). :func:`evidence_view` lays out any of it without knowing the check, so a new
check appears in the reports without code changes: scalars and intervals become
key/value lines, lists of records become tables, nested mappings are flattened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reports.model import Table

__all__ = ["EvidenceView", "evidence_view", "is_estimate", "iter_records"]

#: List items of a list of scalars shown before "... (N in all)".
MAX_LIST_ITEMS = 20
#: A mapping of scalars with more entries than this becomes a table of its own.
MAX_INLINE_MAPPING = 8


def is_estimate(value: Any) -> bool:
    """Whether ``value`` is an interval in medaudit's one shape (``estimate``, ``ci_low``, ``ci_high``)."""
    return isinstance(value, Mapping) and {"estimate", "ci_low", "ci_high"} <= set(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool)) or is_estimate(value)


def _compact(value: Any) -> Any:
    """A cell: scalars and intervals as they are, anything else as compact JSON text."""
    if _is_scalar(value):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        shown = ", ".join(str(v) for v in value[:MAX_LIST_ITEMS])
        return shown + (f" … ({len(value)} in all)" if len(value) > MAX_LIST_ITEMS else "")
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)


@dataclass
class EvidenceView:
    """Evidence laid out for reading.

    Attributes
    ----------
    scalars : list of (str, object)
        ``(key path, value)``; values are scalars or intervals.
    tables : list of Table
        One per list of records (or large mapping), titled by its key path.
    """

    scalars: list[tuple[str, Any]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def _nested(value: Any) -> bool:
    """A value that does not fit a cell: a mapping (not an interval) or a list of containers."""
    if isinstance(value, Mapping):
        return not is_estimate(value)
    return isinstance(value, list) and any(isinstance(v, (Mapping, list)) for v in value)


def _records_table(title: str, records: list[Any], view: EvidenceView) -> None:
    if not all(isinstance(r, Mapping) for r in records):  # a list of lists or mixed
        width = max((len(r) for r in records if isinstance(r, list)), default=1)
        rows = [[_compact(v) for v in (r if isinstance(r, list) else [r])] for r in records]
        view.tables.append(Table(title, [str(i) for i in range(width)], rows))
        return
    if len(records) == 1:  # one record reads better as key/value lines
        _walk(f"{title}[0]", records[0], view)
        return
    columns: list[str] = []
    for r in records:
        for k in r:
            if str(k) not in columns:
                columns.append(str(k))
    nested = [c for c in columns if any(_nested(r.get(c)) for r in records)]
    flat = [c for c in columns if c not in nested]
    view.tables.append(Table(title, flat, [[_compact(r.get(c)) for c in flat] for r in records]))
    for c in nested:  # e.g. rollups[i].listed: a table of its own per record
        for i, r in enumerate(records):
            if r.get(c) not in (None, [], {}):
                _walk(f"{title}[{i}].{c}", r.get(c), view)


def _walk(prefix: str, value: Any, view: EvidenceView) -> None:
    if _is_scalar(value):
        view.scalars.append((prefix, value))
    elif isinstance(value, Mapping):
        if value and all(_is_scalar(v) for v in value.values()) and len(value) > MAX_INLINE_MAPPING:
            view.tables.append(Table(prefix, ["key", "value"],
                                     [[str(k), v] for k, v in value.items()]))
            return
        for k, v in value.items():
            _walk(f"{prefix}.{k}" if prefix else str(k), v, view)
    elif isinstance(value, list):
        if not value or all(_is_scalar(v) and not is_estimate(v) for v in value):
            view.scalars.append((prefix, _compact(value)))
        else:
            _records_table(prefix, value, view)
    else:  # pragma: no cover - evidence is JSON
        view.scalars.append((prefix, str(value)))


def evidence_view(evidence: Mapping[str, Any]) -> EvidenceView:
    """Lay out a finding's evidence (see the module docstring).

    Parameters
    ----------
    evidence : mapping
        ``Finding.evidence`` (JSON data).

    Returns
    -------
    EvidenceView
        Scalars in the order of the evidence (``method`` keys included where they
        stand), then one table per list of records, rows complete.
    """
    view = EvidenceView()
    _walk("", evidence, view)
    return view


def iter_records(value: Any, path: str = "") -> list[tuple[str, list[dict[str, Any]]]]:
    """Every list of records (dicts) inside ``value``, with its key path, depth first."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            out += iter_records(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out.append((path, list(value)))
        for i, v in enumerate(value):
            out += [(p, r) for p, r in iter_records(v, f"{path}[{i}]") if p != path]
    return out
