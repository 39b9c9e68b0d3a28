"""The pipeline: compose ingestion, training and the audit over one run directory.

Stages talk only through the run directory (see ``docs/architecture.md``), so a
pipeline can stop after any stage and be resumed, or re-audited with new
settings, without retraining.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.findings import Finding
from audit.rundir import RunDir
from ingest.sources import (
    IngestOptions,
    IngestSummary,
    ingest_dicom_dir,
    ingest_manifest,
    ingest_npz,
)

__all__ = ["IngestSource", "PipelineResult", "run_ingest", "run_pipeline"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestSource:
    """One of the three inputs: ``manifest``; ``dicom_dir`` + ``labels``; ``npz``."""

    manifest: Path | None = None
    dicom_dir: Path | None = None
    labels: Path | None = None
    npz: Path | None = None


def run_ingest(source: IngestSource, out: Path, options: IngestOptions) -> IngestSummary:
    """Ingest ``source`` into ``out``.

    Raises
    ------
    ValueError
        When not exactly one input is given.
    """
    if source.manifest is not None:
        return ingest_manifest(source.manifest, out, options)
    if source.dicom_dir is not None and (source.labels is not None or not options.require_labels):
        return ingest_dicom_dir(source.dicom_dir, source.labels, out, options)
    if source.npz is not None:
        return ingest_npz(source.npz, out, options)
    raise ValueError("no input: give a manifest, a DICOM folder with labels, or an npz")


@dataclass
class PipelineResult:
    """What the pipeline did, stage by stage."""

    run: RunDir
    ingest: IngestSummary
    train_text: str | None = None
    findings: list[Finding] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def run_pipeline(
    source: IngestSource,
    out: Path,
    *,
    ingest_options: IngestOptions,
    train_config: Any | None = None,
    audit: bool = True,
    checks: Sequence[str] | None = None,
    audit_config: Mapping[str, Mapping[str, Any]] | None = None,
) -> PipelineResult:
    """Ingest, then train (when ``train_config`` is given), then audit.

    Parameters
    ----------
    source : IngestSource
    out : Path
        The run directory.
    ingest_options : IngestOptions
    train_config : training.TrainConfig, optional
        Skip training when None (the audit then runs the checks that need no model).
    audit : bool
        Run the audit checks at the end.
    checks, audit_config
        See :func:`audit.run_audit`.
    """
    t0 = time.perf_counter()
    summary = run_ingest(source, out, ingest_options)
    result = PipelineResult(run=summary.run, ingest=summary)
    result.seconds["ingest"] = time.perf_counter() - t0
    if train_config is not None:
        from training import train_run

        t1 = time.perf_counter()
        trained = train_run(summary.run, train_config)
        result.train_text = trained.text
        result.seconds["train"] = time.perf_counter() - t1
    if audit:
        from audit.engine import run_audit

        t2 = time.perf_counter()
        result.findings = run_audit(summary.run, checks=checks, config=audit_config)
        result.seconds["audit"] = time.perf_counter() - t2
    return result
