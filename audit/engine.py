"""Run registered checks over a run directory and record what they found."""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.context import AuditContext
from audit.findings import Finding, sort_findings
from audit.registry import build_config, get_check, list_checks
from audit.rundir import FINDINGS, RunDir

__all__ = ["AuditResult", "audit_context", "run_audit", "validate_audit_config", "write_audit_result"]

logger = logging.getLogger(__name__)


@dataclass
class AuditResult:
    """Findings plus what did not run and why.

    Attributes
    ----------
    findings : list of Finding
        Most severe first.
    skipped : list of dict
        ``{"check", "reason"}`` for checks whose evidence is missing.
    errors : list of dict
        ``{"check", "error"}`` for checks that failed; the others still ran.
    timings : dict
        Seconds per check.
    """

    findings: list[Finding] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)


def audit_context(
    ctx: AuditContext,
    *,
    checks: Sequence[str] | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
) -> AuditResult:
    """Run checks on an :class:`AuditContext` (pure: nothing is written).

    Parameters
    ----------
    ctx : AuditContext
        The evidence.
    checks : sequence of str, optional
        Names to run (default: all registered, in registry order).
    config : mapping, optional
        ``{check_name: {setting: value}}`` overrides of the checks' defaults.

    Raises
    ------
    ValueError
        For an unknown check name or setting (before anything runs).
    """
    configs = validate_audit_config(config, checks=checks)
    specs = [get_check(n) for n in configs]
    result = AuditResult()
    for spec in specs:
        missing = spec.missing_evidence(ctx)
        if missing:
            result.skipped.append({"check": spec.name, "reason": "; ".join(missing)})
            continue
        cfg = configs[spec.name]
        result.configs[spec.name] = dataclasses.asdict(cfg)
        t0 = time.perf_counter()
        try:
            found = spec.func(ctx, cfg)
        except Exception as err:  # one failing check must not sink the audit
            logger.error("check %s failed: %s", spec.name, err)
            logger.debug("%s", traceback.format_exc())
            result.errors.append({"check": spec.name, "error": f"{type(err).__name__}: {err}"})
            continue
        finally:
            result.timings[spec.name] = round(time.perf_counter() - t0, 4)
        result.findings.extend(found)
    result.findings = sort_findings(result.findings)
    return result


def validate_audit_config(
    config: Mapping[str, Mapping[str, Any]] | None,
    *,
    checks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Check the requested checks and their settings; return each check's config.

    Parameters
    ----------
    config : mapping, optional
        ``{check_name: {setting: value}}``.
    checks : sequence of str, optional
        Names to run (default: all registered).

    Returns
    -------
    dict
        Check name -> its config dataclass, in run order.

    Raises
    ------
    ValueError
        For an unknown check (in ``checks`` or as a config section), an unknown
        setting or a bad value, naming the valid choices.
    """
    names = list(checks) if checks is not None else list_checks()
    config = dict(config or {})
    unknown_sections = sorted(set(config) - set(list_checks()))
    if unknown_sections:
        raise ValueError(
            f"audit config has sections for unknown checks {unknown_sections}; "
            f"valid checks: {', '.join(list_checks())}"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"checks listed more than once: {dupes}")
    specs = [get_check(n) for n in names]
    return {s.name: build_config(s, config.get(s.name)) for s in specs}


def run_audit(
    run_dir: str | Path | RunDir,
    checks: Sequence[str] | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    write: bool = True,
) -> list[Finding]:
    """Audit a run directory and write ``findings.json``.

    Parameters
    ----------
    run_dir : str or Path or RunDir
        An ingested run directory (trained or with external predictions).
    checks : sequence of str, optional
        Check names (default: every registered check that has its evidence).
    config : mapping, optional
        ``{check_name: {setting: value}}`` overrides.
    write : bool
        Write ``findings.json`` and the ``audit`` section of ``run.json``.

    Returns
    -------
    list of Finding
        Most severe first. Skipped checks and errors are recorded in
        ``run.json`` under ``audit``.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    result = audit_context(AuditContext.from_run_dir(run), checks=checks, config=config)
    if write:
        write_audit_result(run, result)
    return result.findings


def write_audit_result(run: RunDir, result: AuditResult) -> None:
    """Write ``findings.json`` and the ``audit`` section of ``run.json``."""
    run.write_json(FINDINGS, [f.to_dict() for f in result.findings])
    run.update_run_json(
        {
            "audit": {
                "checks_run": sorted(result.configs),
                "skipped": result.skipped,
                "errors": result.errors,
                "timings_s": result.timings,
                "config": result.configs,
            }
        }
    )
