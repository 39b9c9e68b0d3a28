"""Everything a report reads from a run directory, loaded once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.findings import Finding, sort_findings
from audit.rundir import FINDINGS, RunDir

__all__ = ["RunData", "load_run"]


@dataclass
class RunData:
    """The artifacts of one run directory that reports use.

    Attributes
    ----------
    run : RunDir
    info : dict
        ``run.json``.
    manifest : pandas.DataFrame
        N rows.
    classes : list of str
    findings : list of Finding or None
        Most severe first; None when the run has not been audited.
    finding_ids : list of str
        ``F1``, ``F2``, ... in the order of ``findings``.
    quarantine : pandas.DataFrame
    """

    run: RunDir
    info: dict[str, Any]
    manifest: pd.DataFrame
    classes: list[str]
    findings: list[Finding] | None
    quarantine: pd.DataFrame
    finding_ids: list[str] = field(default_factory=list)
    _arrays: dict[str, np.ndarray | None] = field(default_factory=dict)

    def array(self, name: str, *, mmap: bool = False) -> np.ndarray | None:
        """Run-directory array ``name`` (e.g. ``"oof/pred_probs"``), or None when absent."""
        if name not in self._arrays:
            self._arrays[name] = self.run.read_array(name, mmap=mmap) if self.run.has(name) else None
        return self._arrays[name]

    def findings_of(self, check: str) -> list[tuple[str, Finding]]:
        """``(id, finding)`` of one check."""
        return [(i, f) for i, f in zip(self.finding_ids, self.findings or []) if f.check == check]

    @property
    def audit(self) -> dict[str, Any]:
        """``run.json['audit']`` (empty when not audited)."""
        return self.info.get("audit") or {}


def load_run(run: RunDir) -> RunData:
    """Read a run directory for a report.

    Raises
    ------
    audit.rundir.RunArtifactMissingError
        When the run has no manifest (not ingested).
    """
    manifest = run.read_manifest()
    info = run.read_run_json()
    findings = None
    if run.has(FINDINGS):
        findings = sort_findings([Finding.from_dict(d) for d in run.read_json(FINDINGS)])
    data = RunData(run=run, info=info, manifest=manifest, classes=run.class_names(),
                   findings=findings, quarantine=run.read_quarantine())
    data.finding_ids = [f"F{i + 1}" for i in range(len(findings or []))]
    return data
