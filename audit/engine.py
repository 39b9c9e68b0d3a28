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
from typing import TYPE_CHECKING, Any

from audit.consistency import verify_run
from audit.context import AuditContext
from audit.findings import Finding, severity_rank, sort_findings
from audit.model_quality import ModelQuality, ModelQualityConfig, model_quality_of_context
from audit.registry import build_config, build_settings, get_check, list_checks, registry
from audit.rundir import FINDINGS, RunDir, stale_after

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "ENGINE_SECTIONS",
    "AuditIncompleteError",
    "AuditResult",
    "apply_model_quality",
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
MSG_NO_TABLE = "check {check!r} has no per-sample table; checks with one: {with_table}"
MSG_TABLE_NOT_RUN = (
    "check {check!r} did not run in this audit ({why}); audit again with it in checks=[...] "
    "(checks run: {run})"
)
MSG_TABLE_NO_CONTEXT = (
    "this AuditResult holds no evidence (it was not made by audit_context or audit_run), "
    "so check tables cannot be computed; audit again"
)


#: Config sections that belong to the engine, not to a check.
ENGINE_SECTIONS: dict[str, type] = {"model_quality": ModelQualityConfig}

MSG_WEAK_MODEL = (
    " This finding rests on the model's predictions, and the model is weak: {reason}. "
    "Treat it as a lead to check, not as a measurement."
)


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
    #: The evidence audited, kept so that per-sample tables are computed on demand.
    context: AuditContext | None = field(default=None, repr=False, compare=False)
    #: Config dataclass of every check asked for, in run order (skipped ones included).
    check_configs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: The model-quality assessment (:mod:`audit.model_quality`) attached to the
    #: findings of model-based checks; ``None`` when no model-based check ran.
    model_quality: dict[str, Any] | None = None
    _tables: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __repr__(self) -> str:
        counts = ", ".join(f"{sum(f.severity == s for f in self.findings)} {s}"
                           for s in ("critical", "warning", "info", "pass"))
        return (f"AuditResult({len(self.findings)} findings: {counts}; "
                f"skipped={[s['check'] for s in self.skipped]}, "
                f"errors={[e['check'] for e in self.errors]})")

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

    # -- for notebooks and pandas ----------------------------------------------------
    def findings_frame(self) -> pd.DataFrame:
        """The findings as a table, one row per finding, most severe first.

        Returns
        -------
        pandas.DataFrame
            Columns ``check``, ``severity``, ``title``, ``message``,
            ``n_samples``, ``sample_ids`` (list), ``recommendation``,
            ``references`` (list) and ``evidence`` (dict).

        Examples
        --------
        >>> from audit.findings import Finding
        >>> res = AuditResult(findings=[Finding(check="outliers", severity="info",
        ...     title="Unusual images", message="2 images stand out.",
        ...     evidence={"method": "robust z"}, sample_ids=["a", "b"])])
        >>> res.findings_frame()[["check", "severity", "n_samples"]]
              check severity  n_samples
        0  outliers     info          2
        """
        import pandas as pd

        columns = ["check", "severity", "title", "message", "n_samples", "sample_ids",
                   "recommendation", "references", "evidence"]
        return pd.DataFrame(
            [{"check": f.check, "severity": f.severity, "title": f.title, "message": f.message,
              "n_samples": len(f.sample_ids), "sample_ids": list(f.sample_ids),
              "recommendation": f.recommendation, "references": list(f.references),
              "evidence": f.evidence} for f in self.findings],
            columns=columns,
        )

    def table(self, check: str) -> pd.DataFrame:
        """The full per-sample table of ``check`` (its findings list only the top samples).

        Computed on demand from the audited evidence with the audit's settings,
        then kept.

        Parameters
        ----------
        check : str
            A check that ran in this audit and has a table
            (:attr:`audit.check_spec.CheckSpec.table`).

        Returns
        -------
        pandas.DataFrame
            One row per sample in manifest order, ``sample_id`` first (a copy).

        Raises
        ------
        ValueError
            For an unknown check, a check without a table (listing those that
            have one), or a check that did not run here (skipped, failed or not
            asked for), with the reason.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 200)
        >>> p1 = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, 200), 0.01, 0.99)
        >>> man = pd.DataFrame({"sample_id": [f"s{i}" for i in range(200)], "label": y,
        ...                     "patient_key": [f"p{i}" for i in range(200)]})
        >>> ctx = AuditContext.from_arrays(man, ["neg", "pos"], pred_probs=np.c_[1 - p1, p1])
        >>> res = audit_context(ctx, checks=["label_issues"], config={"label_issues": {"n_boot": 50}})
        >>> table = res.table("label_issues")
        >>> len(table), list(table.columns[:3])
        (200, ['sample_id', 'patient_key', 'given_label_name'])
        >>> print(res.summary().splitlines()[1])
          PASS      label_issues: Estimated label noise 0.0% (95% CI 0.0% to 0.0%)
        """
        spec = get_check(check)
        if spec.table is None:
            with_table = [n for n, s in registry().items() if s.table is not None]
            raise ValueError(MSG_NO_TABLE.format(check=check, with_table=", ".join(with_table)))
        if check not in self._tables:
            errors = {e["check"]: e["error"] for e in self.errors}
            skipped = {s["check"]: s["reason"] for s in self.skipped}
            why = (f"it failed: {errors[check]}" if check in errors
                   else f"skipped: {skipped[check]}" if check in skipped
                   else None if check in self.check_configs else "it was not asked for")
            if why is not None:
                raise ValueError(MSG_TABLE_NOT_RUN.format(
                    check=check, why=why, run=", ".join(self.configs) or "none"))
            if self.context is None:
                raise ValueError(MSG_TABLE_NO_CONTEXT)
            self._tables[check] = spec.table(self.context, self.check_configs[check])
        return self._tables[check].copy()

    def summary(self) -> str:
        """A traffic-light summary as text, one line per check (:mod:`audit.result_summary`)."""
        from audit.result_summary import summary_text

        return summary_text(self)

    def _repr_html_(self) -> str:
        from audit.result_summary import summary_html

        return summary_html(self)


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
        ``{check_name: {setting: value}}`` overrides of the checks' defaults;
        the engine's own section ``model_quality``
        (:class:`audit.model_quality.ModelQualityConfig`) sets the rule applied
        to the findings of model-based checks (:func:`apply_model_quality`).
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
    mq_config = build_settings("section 'model_quality'", ModelQualityConfig,
                               (config or {}).get("model_quality"))
    specs = [get_check(n) for n in configs]
    result = AuditResult(context=ctx, check_configs=dict(configs))
    quality: ModelQuality | None = None
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
        if spec.model_based:
            if quality is None:
                quality = model_quality_of_context(ctx, mq_config)
                result.model_quality = quality.to_evidence()
            found = apply_model_quality(found, quality, wording=spec.weak_model_wording)
        result.findings.extend(found)
    result.findings = sort_findings(result.findings)
    if result.errors:
        if strict:
            result.raise_for_errors()
        warnings.warn(MSG_INCOMPLETE.format(
            n=len(result.errors), details=", ".join(e["check"] for e in result.errors)),
            stacklevel=2)
    return result


def apply_model_quality(
    findings: Sequence[Finding],
    quality: ModelQuality,
    *,
    wording: Any = None,
) -> list[Finding]:
    """The model-quality rule applied to the findings of one model-based check.

    Every finding gets ``evidence["model_quality"]``
    (:meth:`audit.model_quality.ModelQuality.to_evidence`). When the model is
    weak, every finding that is not a ``pass`` is reworded by ``wording`` (the
    check's :attr:`~audit.check_spec.CheckSpec.weak_model_wording`; without one,
    :data:`MSG_WEAK_MODEL` is appended to the message) and its severity is
    capped at ``warning`` (``evidence["model_quality"]["severity_before_cap"]``
    records a lowered one).

    Parameters
    ----------
    findings : sequence of Finding
    quality : ModelQuality
    wording : callable, optional
        ``wording(finding, quality) -> Finding``.

    Returns
    -------
    list of Finding
    """
    out = []
    for f in findings:
        mq = quality.to_evidence()
        if quality.weak and f.severity != "pass":
            if wording is not None:
                f = wording(f, quality)
            else:
                f = dataclasses.replace(f, message=f.message + MSG_WEAK_MODEL.format(
                    reason=quality.reason))
            if severity_rank(f.severity) < severity_rank("warning"):
                mq["severity_before_cap"] = f.severity
                f = dataclasses.replace(f, severity="warning")
        out.append(dataclasses.replace(f, evidence={**f.evidence, "model_quality": mq}))
    return out


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
    unknown_sections = sorted(set(config) - set(list_checks()) - set(ENGINE_SECTIONS))
    if unknown_sections:
        raise ValueError(
            f"audit config has sections for unknown checks {unknown_sections}; "
            f"valid checks: {', '.join(list_checks())} (and the engine's sections: "
            f"{', '.join(ENGINE_SECTIONS)})"
        )
    for section, cls in ENGINE_SECTIONS.items():
        build_settings(f"section {section!r}", cls, config.get(section))
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


def _versions() -> dict[str, str]:
    """Versions of the libraries the checks compute with (for the reproducibility record)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("medaudit", "numpy", "scipy", "pandas", "scikit-learn", "cleanlab", "netcal"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover - not installed
            out[pkg] = "not installed"
    return out


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
                "model_quality": result.model_quality,
                "versions": _versions(),
            }
        },
        drop=drop,
    )
