"""Exit codes of the ``medaudit`` command line (documented in the README)."""

from __future__ import annotations

__all__ = ["EXIT_AUDIT_INCOMPLETE", "EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_FINDINGS_AT_FAIL_ON",
           "EXIT_OK", "EXIT_REPORT_MISMATCH"]

#: Success.
EXIT_OK = 0
#: Anything unexpected (a bug: please report it with the traceback).
EXIT_FAILURE = 1
#: Input the user can fix; one line says what, where and how.
EXIT_BAD_INPUT = 2
#: ``audit --fail-on SEVERITY`` found a finding at or above that severity.
EXIT_FINDINGS_AT_FAIL_ON = 3
#: Some audit checks failed: the audit is incomplete.
EXIT_AUDIT_INCOMPLETE = 4
#: ``verify``: the report does not match its run directory (or was edited).
EXIT_REPORT_MISMATCH = 5
