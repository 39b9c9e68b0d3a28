"""Build the report model from a run directory: run directory in, :class:`Report` out.

Pure in the sense that matters for verification: the same run directory and options
give the same report content, byte for byte (seeded bootstraps, sorted tables, no
clock). Nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from audit.consistency import verify_run
from audit.rundir import RunDir
from reports._rundata import load_run
from reports.datasheet import build_datasheet
from reports.findings_detail import build_findings
from reports.model import Report
from reports.model_card import build_model_card
from reports.options import ReportOptions
from reports.regulatory import build_regulatory
from reports.reproducibility import build_reproducibility
from reports.summary import build_summary

__all__ = ["SCHEMA_VERSION", "TITLES", "build_report"]

#: Version of ``reports/report.schema.json`` the content follows.
SCHEMA_VERSION = "1.0"
#: Report title per audience.
TITLES: dict[str, str] = {
    "all": "Dataset and model audit report",
    "clinician": "Dataset and model audit: summary for clinicians",
    "reviewer": "Dataset and model audit: evidence for reviewers",
    "regulatory": "Dataset and model audit: regulatory submission pack",
}


def build_report(run_dir: str | os.PathLike[str] | RunDir,
                 options: ReportOptions | None = None, *,
                 only: Collection[str] | None = None) -> Report:
    """Build the report of one audience from a run directory.

    Parameters
    ----------
    run_dir : path-like or RunDir
        An ingested run directory (trained or with external predictions, audited or not:
        missing parts are reported as not evaluated).
    options : ReportOptions, optional
        Audience and caps (defaults: every section).
    only : collection of str, optional
        Build only these of the audience's sections (the summary is always built):
        the dashboard shows the findings of a large run without waiting for the model
        card's bootstrap intervals.

    Returns
    -------
    Report

    Raises
    ------
    audit.rundir.RunArtifactMissingError
        When the run has not been ingested.
    audit.rundir.RunDirMismatchError
        When its artifacts disagree with each other (see :func:`audit.consistency.verify_run`).
    """
    options = options or ReportOptions()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    verify_run(run)
    data = load_run(run)
    wanted = options.sections
    if only is not None:
        unknown = sorted(set(only) - set(wanted))
        if unknown:
            raise ValueError(f"only={sorted(only)} names sections not in the "
                             f"{options.audience!r} audience: {unknown}; valid: {list(wanted)}")
        wanted = tuple(s for s in wanted if s in set(only) | {"summary"})
    train = data.info.get("train") or {}
    report = Report(
        schema_version=SCHEMA_VERSION, audience=options.audience, title=TITLES[options.audience],
        sections=list(wanted),
        run={"classes": list(data.classes), "n_images": len(data.manifest),
             "n_patients": int(data.manifest["patient_key"].nunique()),
             "data_fingerprint": train.get("data_fingerprint"),
             "source": "external predictions" if data.info.get("external") else
             ((data.info.get("ingest") or {}).get("source") or {}).get("kind", "unknown"),
             "trained": bool(train), "audited": data.findings is not None},
        options=options.to_dict())
    report.summary = build_summary(data)  # every audience starts with it
    model = build_model_card(data, options) if {"model", "regulatory"} & set(wanted) else None
    if "dataset" in wanted:
        report.dataset = build_datasheet(data)
    if "model" in wanted:
        report.model = model
    if "findings" in wanted:
        used = sum(len(g) for gal in (model.galleries if model and "model" in wanted else [])
                   for g in gal.groups)
        report.findings = build_findings(data, options, reserved=used)
    if "regulatory" in wanted:
        report.regulatory = build_regulatory(data, model)
    if "reproducibility" in wanted:
        report.reproducibility = build_reproducibility(data)
    return report
