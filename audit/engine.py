"""Run registered checks over a run directory and record what they found.

A check that fails never passes silently: its error is kept in
:attr:`AuditResult.errors`, a ``warning`` finding under the check's name says it
could not run, a :class:`UserWarning` is emitted (or :class:`AuditIncompleteError`
raised with ``strict=True``), and the CLI exits with a distinct code.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.consistency import verify_run
from audit.context import AuditContext
from audit.findings import Finding, sort_findings
from audit.registry import build_config, get_check, list_checks
from audit.rundir import FINDINGS, RunDir, stale_after

__all__ = [
    "AuditIncompleteError",
    "AuditResult",
    "audit_context",
    "audit_run",
    "run_audit",
    "validate_audit_config",
    "write_audit_result",
]

TITLE_FAILED = "Check {check} could not run"
MSG_FAILED = (
    "The {check} check failed with an error, so this audit says nothing about what it "
    "examines ({error}). The other checks ran."
)
REC_FAILED = (
    "Fix the cause named in the error (or report it if it looks like a bug in medaudit) and "
    "audit again; until then treat this part of the audit as not done."
)
MSG_INCOMPLETE = "{n} check(s) failed and did not run to the end: {details}"


class AuditIncompleteError(RuntimeError):
    """Some checks failed (raised by :meth:`AuditResult.raise_for_errors` and ``strict=True``)."""

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

    @property
    def complete(self) -> bool:
        """True when no check failed (skipped checks lacked evidence and are listed apart)."""
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise :class:`AuditIncompleteError` when a check failed.

        Raises
        ------
        AuditIncompleteError
            Naming every failed check and its error.
        """
        if self.errors:
            details = "; ".join(f"{e['check']}: {e['error']}" for e in self.errors)
            raise AuditIncompleteError(MSG_INCOMPLETE.format(n=len(self.errors), details=details))


def audit_context(
    ctx: AuditContext,
    *,
    checks: Sequence[str] | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    strict: bool = False,
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
    strict : bool
        Raise :class:`AuditIncompleteError` when a check fails, instead of
        recording it and emitting a warning.

    Raises
    ------
    ValueError
        For an unknown check name or setting (before anything runs).
    AuditIncompleteError
        With ``strict=True``, when a check fails.
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
            error = " ".join(f"{type(err).__name__}: {err}".split())
            result.errors.append({"check": spec.name, "error": error})
            result.findings.append(Finding(
                check=spec.name, severity="warning",
                title=TITLE_FAILED.format(check=spec.name),
                message=MSG_FAILED.format(check=spec.name, error=error),
                evidence={"error": error, "method": "the check raised an exception"},
                recommendation=REC_FAILED))
            continue
        finally:
            result.timings[spec.name] = round(time.perf_counter() - t0, 4)
        result.findings.extend(found)
    result.findings = sort_findings(result.findings)
    if result.errors:
        if strict:
            result.raise_for_errors()
        warnings.warn(MSG_INCOMPLETE.format(
            n=len(result.errors), details=", ".join(e["check"] for e in result.errors)),
            stacklevel=2)
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
    strict: bool = False,
) -> list[Finding]:
    """Audit a run directory and write ``findings.json``.

    The run directory is first checked to be one consistent state
    (:func:`audit.consistency.verify_run`); the findings and the ``audit``
    section of ``run.json`` are published together, under the writer lock.

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
    strict : bool
        Raise when a check fails (see :func:`audit_context`).

    Returns
    -------
    list of Finding
        Most severe first. Skipped checks and errors are recorded in
        ``run.json`` under ``audit``.

    Raises
    ------
    audit.rundir.RunDirMismatchError
        When the artifacts disagree with each other (stale or edited outputs).
    audit.transaction.RunDirBusyError
        When another process is writing the run directory.
    """
    return audit_run(run_dir, checks=checks, config=config, write=write, strict=strict).findings


def audit_run(
    run_dir: str | Path | RunDir,
    *,
    checks: Sequence[str] | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    write: bool = True,
    strict: bool = False,
) -> AuditResult:
    """Like :func:`run_audit`, returning the whole :class:`AuditResult`."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    validate_audit_config(config, checks=checks)
    if not write:
        verify_run(run)
        return audit_context(AuditContext.from_run_dir(run), checks=checks, config=config,
                             strict=strict)
    with run.transaction("medaudit audit") as staged:
        verify_run(run)
        t0 = time.perf_counter()
        result = audit_context(AuditContext.from_run_dir(run), checks=checks, config=config,
                               strict=strict)
        write_audit_result(staged, result, seconds=time.perf_counter() - t0)
    return result


def write_audit_result(run: RunDir, result: AuditResult, *, seconds: float | None = None) -> None:
    """Write ``findings.json`` and the ``audit`` section of ``run.json``.

    Reports made from earlier findings become stale and are removed when ``run``
    is a staged view (:meth:`audit.rundir.RunDir.transaction`).
    """
    if run._tx is not None:
        stale, sections = stale_after("audit")
        run.remove([p for p in stale if p != FINDINGS])
        drop = sections
    else:
        drop = []
    run.write_json(FINDINGS, [f.to_dict() for f in result.findings])
    run.update_run_json(
        {
            "audit": {
                "checks_run": sorted(result.configs),
                "skipped": result.skipped,
                "errors": result.errors,
                "complete": result.complete,
                "timings_s": result.timings,
                "seconds": None if seconds is None else round(seconds, 3),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config": result.configs,
            }
        },
        drop=drop,
    )
