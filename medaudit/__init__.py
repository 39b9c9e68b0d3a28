"""medaudit: audit medical-imaging datasets and the models trained on them.

The command line is ``medaudit`` (:mod:`medaudit.cli`). In a notebook, audit an
external model's predictions with :func:`audit_predictions`:

>>> import medaudit                                                    # doctest: +SKIP
>>> result = medaudit.audit_predictions(labels, pred_probs, patient_ids=pids)  # doctest: +SKIP
>>> result                                     # a traffic-light summary in Jupyter  # doctest: +SKIP
>>> result.table("label_issues")               # every sample's label-quality score  # doctest: +SKIP

Names are imported lazily, so ``import medaudit`` (and the command line) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["AuditIncompleteError", "AuditResult", "audit_predictions"]

_EXPORTS = {
    "AuditIncompleteError": "audit.engine",
    "AuditResult": "audit.engine",
    "audit_predictions": "medaudit.api",
}

if TYPE_CHECKING:  # pragma: no cover
    from audit.engine import AuditIncompleteError, AuditResult
    from medaudit.api import audit_predictions


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medaudit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
