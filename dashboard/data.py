"""What the dashboard reads from a run directory (pure functions; the app caches them).

Nothing here computes a finding: the report model (:func:`reports.build_report`) gives
the summary, datasheet, model card and findings; per-sample tables come from the
check's own :attr:`audit.check_spec.CheckSpec.table` with the settings recorded in
``run.json['audit']['config']``; thumbnails are drawn from the memory-mapped image
cache by :func:`reports.thumbnails.thumbnail_png`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.consistency import data_fingerprint
from audit.context import AuditContext
from audit.registry import build_config, registry
from audit.rundir import FINDINGS, MANIFEST, RUN_JSON, RunDir
from reports import ReportOptions, build_report
from reports.model import FindingView, Report
from reports.thumbnails import thumbnail_png

__all__ = [
    "LIGHT_SECTIONS",
    "TableResult",
    "check_table",
    "images",
    "load_report",
    "run_fingerprint",
    "run_kind",
    "run_stamp",
    "thumbnail",
]


def run_stamp(run_path: str | Path) -> tuple[float, ...]:
    """Modification times of the files the dashboard's caches depend on (a cache key)."""
    p = Path(run_path)
    return tuple(
        (p / n).stat().st_mtime if (p / n).exists() else 0.0 for n in (MANIFEST, RUN_JSON, FINDINGS)
    )


#: Sections of the light report model: every finding and the traffic lights, without the
#: model card (whose bootstrap intervals take minutes at 10^5 rows of external predictions).
LIGHT_SECTIONS = ("summary", "dataset", "findings")


def load_report(run_path: str | Path, *, light: bool = False) -> Report:
    """The report model (:func:`reports.build_report`); ``light``: :data:`LIGHT_SECTIONS` only."""
    return build_report(
        RunDir(Path(run_path)),
        ReportOptions(audience="all"),
        only=LIGHT_SECTIONS if light else None,
    )


def run_fingerprint(run_path: str | Path) -> str:
    """The run's data fingerprint (:func:`audit.consistency.data_fingerprint`), reviews are tied to it."""
    return data_fingerprint(RunDir(Path(run_path)))


def run_kind(info: Mapping[str, Any]) -> str:
    """How the run's predictions came to be, in words."""
    kind = str(
        info.get("kind")
        or (info.get("predict") and "predict")
        or (info.get("drift") and "drift")
        or ""
    )
    if kind in ("predict", "drift"):
        return f"{kind} run (new data scored by saved fold models)"
    if info.get("train"):
        return "trained by medaudit (K-fold, out-of-fold predictions)"
    if info.get("external"):
        return "predictions of an external model"
    return "ingested only (no model yet)"


@dataclass
class TableResult:
    """A check's per-sample table, or why there is none."""

    table: pd.DataFrame | None
    reason: str = ""
    settings: dict[str, Any] | None = None


def check_table(run_path: str | Path, check: str) -> TableResult:
    """The full per-sample table of ``check``, with the settings the audit recorded.

    Parameters
    ----------
    run_path : path-like
    check : str
        A registered check with a table (:attr:`audit.check_spec.CheckSpec.table`).

    Returns
    -------
    TableResult
        ``table`` (N rows, manifest order) when the check ran in this run's audit,
        else ``None`` with the reason (not audited, skipped, failed, no table).
    """
    run = RunDir(Path(run_path))
    spec = registry().get(check)
    if spec is None or spec.table is None:
        return TableResult(None, f"check {check!r} has no per-sample table in this medaudit")
    audit = run.read_run_json().get("audit") or {}
    if not audit:
        return TableResult(None, f"the run has not been audited: run `medaudit audit {run.path}`")
    skipped = {s["check"]: s.get("reason", "") for s in audit.get("skipped") or []}
    errors = {e["check"]: e.get("error", "") for e in audit.get("errors") or []}
    if check in errors:
        return TableResult(None, f"check {check!r} failed in this audit: {errors[check]}")
    if check in skipped:
        return TableResult(None, f"check {check!r} was skipped: {skipped[check]}")
    if check not in (audit.get("checks_run") or []):
        return TableResult(
            None,
            f"check {check!r} did not run in this audit: run "
            f"`medaudit audit {run.path} --checks {check}`",
        )
    recorded = dict((audit.get("config") or {}).get(check) or {})
    fields = {f for f in spec.config_cls.__dataclass_fields__}
    recorded = {k: v for k, v in recorded.items() if k in fields}
    cfg = build_config(spec, recorded)
    ctx = AuditContext.from_run_dir(run)
    try:
        table = spec.table(ctx, cfg)
    except (ValueError, FileNotFoundError) as err:
        return TableResult(None, f"the table of {check!r} could not be computed: {err}")
    return TableResult(table.reset_index(drop=True), "", recorded)


def images(run_path: str | Path) -> np.ndarray | None:
    """The memory-mapped image cache ``(N, C, H, W)``, or None when the run has none."""
    run = RunDir(Path(run_path))
    return run.read_array("images", mmap=True) if run.has("images") else None


def thumbnail(
    cache: np.ndarray, row: int, *, max_px: int = 160, variant: str | None = None
) -> bytes:
    """PNG bytes of row ``row`` of the image cache (optionally a masked variant)."""
    return thumbnail_png(np.asarray(cache[int(row)]), max_px=max_px, variant=variant)


def findings_of(report: Report, *checks: str) -> list[FindingView]:
    """The report's findings of the named checks (most severe first)."""
    if report.findings is None:
        return []
    return [f for f in report.findings.findings if f.check in checks]
