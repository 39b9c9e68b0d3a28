"""``medaudit audit`` and ``medaudit audit-predictions``: run the audit checks.

``medaudit audit RUN_DIR`` runs every registered check that has its evidence
on a run directory, writes ``findings.json`` and prints a summary sorted by
severity, then the checks that were skipped (with the reason) and those that
failed. ``medaudit audit-predictions`` first builds a run directory from the
predictions of a model trained elsewhere (:func:`ingest.predictions.ingest_predictions`)
and then audits it.

Settings come from a TOML file with one table per check::

    [label_issues]
    max_listed = 50
    warn_noise_rate = 0.08

Exit codes: 0 when every check ran (whatever it found), 2 for bad input (an
unknown check or setting, an unreadable file, an inconsistent run directory), 3
when ``--fail-on`` is given and a finding at or above that severity exists, 4
when some checks failed (the audit is incomplete; this takes precedence over 3).
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from pathlib import Path
from typing import Any

__all__ = [
    "add_parser",
    "format_check_list",
    "print_audit_summary",
    "run",
    "run_predictions",
]

#: Width of the title column in the summary table.
TITLE_WIDTH = 72
NO_RUN_DIR = "medaudit audit needs RUN_DIR (or --list to show the checks)"


def _checks_arg(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [c.strip() for c in value.split(",") if c.strip()]


def _add_audit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="TOML",
                   help="settings, one [check_name] table per check (see --list)")
    p.add_argument("--checks", metavar="A,B",
                   help="comma-separated checks to run (default: every check with its evidence)")
    p.add_argument("--fail-on", choices=["critical", "warning"], default=None,
                   help="exit with code 3 when a finding of this severity or worse exists "
                   "(for CI pipelines that gate on data quality)")
    add_deployment_argument(p)


def add_deployment_argument(p: argparse.ArgumentParser) -> None:
    """``--deployment-prevalence`` (``audit``, ``audit-predictions``, ``run``, ``demo``)."""
    p.add_argument("--deployment-prevalence", metavar="P",
                   help="prevalence where the model is used: the share of the positive class "
                   "(e.g. 0.05), or one share per class, comma-separated; stored in run.json "
                   "and used by the prevalence_shift check (default: the value stored in "
                   "run.json, if any)")


def _parse_prevalence(text: str) -> float | list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--deployment-prevalence must be a number or comma-separated numbers; "
                         f"got {text!r}") from None
    if not values:
        raise ValueError("--deployment-prevalence is empty")
    return values[0] if len(values) == 1 else values


def resolve_deployment(
    run_dir: Path, args: argparse.Namespace, config: dict[str, Any] | None,
    checks: list[str] | None,
) -> dict[str, Any] | None:
    """Settings with the deployment prevalence, which is also stored in ``run.json``.

    The flag wins, then ``[prevalence_shift] deployment_prevalence`` of the TOML, then
    the value stored in ``run.json['deployment']`` by an earlier audit. A value given
    here is written to ``run.json['deployment']`` so that reports and the dashboard
    use the same one.
    """
    from audit.rundir import RunDir
    from medaudit.api import DEPLOYMENT_SETTING, deployment_value, with_deployment

    run = RunDir(run_dir)
    if not run.has("manifest.parquet"):
        return config  # the audit says what is missing
    classes = run.class_names()
    flag = getattr(args, "deployment_prevalence", None)
    toml = (config or {}).get("prevalence_shift", {}).get(DEPLOYMENT_SETTING)
    stored = run.read_run_json().get("deployment", {}).get("prevalence")
    given = _parse_prevalence(flag) if flag is not None else toml
    if given is None and stored is None:
        return config
    value = deployment_value(given if given is not None else stored, classes)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # checks=... without prevalence_shift: stored anyway
        config = with_deployment(config, value, checks)
    if given is not None:
        source = "--deployment-prevalence" if flag is not None else "audit config"
        with run.transaction("medaudit audit") as staged:
            staged.update_run_json({"deployment": {"prevalence": value, "classes": classes,
                                                   "source": source}})
    return config


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit audit`` and ``medaudit audit-predictions``."""
    p = sub.add_parser("audit", help="run the audit checks on a run directory",
                       description="Run the audit checks on a run directory, write "
                       "findings.json and print a summary sorted by severity.")
    p.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR",
                   help="run directory (ingested; trained or with external predictions)")
    _add_audit_options(p)
    p.add_argument("--list", action="store_true",
                   help="list the registered checks, what they need and their settings")
    p.set_defaults(func=run)

    e = sub.add_parser(
        "audit-predictions",
        help="audit predictions of a model trained elsewhere",
        description="Build a run directory from labels and predicted probabilities of an "
        "external model (rows joined on sample_id), then audit it. External predictions are "
        "assumed out-of-sample. Without --labels the predictions are an unlabeled batch "
        "(run.json records has_labels: false; checks that need labels are skipped): compare "
        "it with a labeled reference run with medaudit drift REFERENCE_RUN OUT.",
    )
    e.add_argument("--labels", type=Path,
                   help="CSV with sample_id, label (class name or index) and optional metadata; "
                   "omit it for an unlabeled batch (rows from --pred-probs, or from --metadata "
                   "when --pred-probs is .npy)")
    e.add_argument("--pred-probs", type=Path, required=True,
                   help="CSV with sample_id + one probability column per class (named by class "
                   "name or index), or .npy (N, K) in labels row order")
    e.add_argument("--embeddings", type=Path, help=".npy (N, D) features in labels row order")
    e.add_argument("--metadata", type=Path, help="CSV of extra columns joined on sample_id")
    e.add_argument("--classes", help="class names in index order, comma-separated (needed when "
                   "labels are names and --pred-probs is .npy)")
    e.add_argument("--secret-file", type=Path, help="pseudonymisation key file (default: "
                   "$MEDAUDIT_SECRET or ~/.config/medaudit/secret.key)")
    e.add_argument("--out", type=Path, required=True, help="run directory to write")
    e.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    _add_audit_options(e)
    e.set_defaults(func=run_predictions)


def _load_config(path: Path | None, checks: list[str] | None) -> dict[str, Any] | None:
    """Read and validate the TOML settings (ValueError before anything runs)."""
    from audit.engine import validate_audit_config
    from medaudit.config import load_audit_config

    config = load_audit_config(path) if path is not None else None
    validate_audit_config(config, checks=checks)
    return config


def format_check_list() -> str:
    """The registered checks with their needs and settings (``medaudit audit --list``)."""
    from audit.registry import registry

    lines = []
    for name, spec in registry().items():
        needs = list(spec.requires) + [f"column {c!r}" for c in spec.requires_columns]
        if spec.requires_any_column_prefix:
            needs.append(f"columns {spec.requires_any_column_prefix}*")
        lines.append(f"{name}: {spec.description}"
                     + (" [model-based: the model-quality rule applies]" if spec.model_based
                        else ""))
        lines.append(f"    needs: {', '.join(needs) if needs else 'manifest only'}")
        fields = dataclasses.fields(spec.config_cls)
        if fields:
            settings = ", ".join(f"{f.name}={f.default!r}" for f in fields
                                 if f.default is not dataclasses.MISSING)
            lines.extend(textwrap.wrap(f"settings [{name}]: {settings}", width=100,
                                       initial_indent="    ", subsequent_indent="        "))
    from audit.engine import ENGINE_SECTIONS

    for section, cls in ENGINE_SECTIONS.items():
        settings = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
        lines.append(f"{section}: the engine's rule for findings of model-based checks")
        lines.extend(textwrap.wrap(f"settings [{section}]: {settings}", width=100,
                                   initial_indent="    ", subsequent_indent="        "))
    return "\n".join(lines)


def print_audit_summary(run_dir: Any) -> None:
    """Print the findings table, skipped checks and errors of an audited run directory.

    Parameters
    ----------
    run_dir : RunDir or path
        Run directory with ``findings.json`` and the ``audit`` section of ``run.json``.
    """
    from audit.findings import Finding, sort_findings
    from audit.rundir import FINDINGS, RunDir

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    findings = sort_findings([Finding.from_dict(d) for d in run.read_json(FINDINGS)])
    info = run.read_run_json().get("audit", {})
    rows = [(f.severity, f.check, f.title, str(len(f.sample_ids))) for f in findings]
    header = ("severity", "check", "title", "samples")
    w_sev = max([len(header[0])] + [len(r[0]) for r in rows])
    w_chk = max([len(header[1])] + [len(r[1]) for r in rows])
    print(f"{header[0]:<{w_sev}}  {header[1]:<{w_chk}}  {header[2]:<{TITLE_WIDTH}}  {header[3]}")
    for sev, chk, title, n in rows:
        t = title if len(title) <= TITLE_WIDTH else title[: TITLE_WIDTH - 1] + "…"
        print(f"{sev:<{w_sev}}  {chk:<{w_chk}}  {t:<{TITLE_WIDTH}}  {n:>7}")
    counts = {s: sum(f.severity == s for f in findings) for s in ("critical", "warning", "info", "pass")}
    print(
        f"{len(findings)} findings: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f" (details: {run.file(FINDINGS)})"
    )
    mq = info.get("model_quality")
    if mq:
        print(f"model quality: {mq['verdict']} ({mq['reason']})"
              + ("; model-based findings are at most warning" if mq["verdict"] == "weak" else ""))
    for s in info.get("skipped", []):
        print(f"skipped {s['check']}: {s['reason']}")
    for e in info.get("errors", []):
        print(f"error in {e['check']}: {e['error']}")


def audit_exit_code(result: Any, fail_on: str | None) -> int:
    """The exit code of an audit (see the module docstring)."""
    from audit.findings import severity_rank
    from medaudit.exit_codes import EXIT_AUDIT_INCOMPLETE, EXIT_FINDINGS_AT_FAIL_ON, EXIT_OK

    if result.errors:
        return EXIT_AUDIT_INCOMPLETE
    if fail_on is not None and any(
        severity_rank(f.severity) <= severity_rank(fail_on) for f in result.findings
    ):
        return EXIT_FINDINGS_AT_FAIL_ON
    return EXIT_OK


def audit_and_print(run_dir: Path, args: argparse.Namespace) -> int:
    """Validate the settings, audit ``run_dir``, print the summary (``--checks``, ``--config``)."""
    import warnings

    from audit.engine import audit_run

    checks = _checks_arg(args.checks)
    config = _load_config(args.config, checks)
    config = resolve_deployment(run_dir, args, config, checks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the summary lists failed checks
        result = audit_run(run_dir, checks=checks, config=config)
    print_audit_summary(run_dir)
    code = audit_exit_code(result, getattr(args, "fail_on", None))
    if result.errors:
        print(f"audit incomplete: {len(result.errors)} check(s) failed (exit code {code})")
    return code


def run(args: argparse.Namespace) -> int:
    """``medaudit audit``."""
    if args.list:
        print(format_check_list())
        return 0
    if args.run_dir is None:
        raise ValueError(NO_RUN_DIR)
    return audit_and_print(args.run_dir, args)


def run_predictions(args: argparse.Namespace) -> int:
    """``medaudit audit-predictions``."""
    from ingest.predictions import ingest_predictions

    checks = _checks_arg(args.checks)
    _load_config(args.config, checks)  # fail on bad settings before writing anything
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    run_dir = ingest_predictions(
        args.labels, args.pred_probs, out=args.out, embeddings=args.embeddings,
        metadata=args.metadata, class_names=classes, secret_file=args.secret_file,
        overwrite=args.overwrite,
    )
    n_refused = len(run_dir.read_quarantine())
    n = run_dir.n_samples()
    print(f"wrote run directory {run_dir.path}: {n} samples"
          + (" without labels" if args.labels is None else "")
          + (f", {n_refused} rows refused (see quarantine.csv)" if n_refused else ""))
    code = audit_and_print(run_dir.path, args)
    if args.labels is None:
        print(f"next: medaudit drift REFERENCE_RUN {run_dir.path}  (compare the batch with the "
              "labeled run of the same model)")
    return code
