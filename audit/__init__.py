"""medaudit's audit package: the run-directory contract, findings, the check registry.

Public API
----------
>>> import audit                                                # doctest: +SKIP
>>> audit.list_checks()                                         # doctest: +SKIP
['label_issues', 'annotator_agreement', ...]
>>> findings = audit.run_audit("runs/demo", checks=["label_issues"])   # doctest: +SKIP

Importing this package is light: no torch, no cleanlab (loaded by the checks
that need it, when they run).
"""

from audit.context import AuditContext
from audit.engine import AuditResult, audit_context, run_audit, write_audit_result
from audit.findings import REFERENCES, SEVERITIES, Finding, sort_findings
from audit.registry import CheckSpec, build_config, get_check, list_checks
from audit.rundir import RunArtifactMissingError, RunDir, RunDirMismatchError

__all__ = [
    "REFERENCES",
    "SEVERITIES",
    "AuditContext",
    "AuditResult",
    "CheckSpec",
    "Finding",
    "RunArtifactMissingError",
    "RunDir",
    "RunDirMismatchError",
    "audit_context",
    "build_config",
    "get_check",
    "list_checks",
    "run_audit",
    "sort_findings",
    "write_audit_result",
]
