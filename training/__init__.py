"""medaudit training core: patient-grouped K-fold training with timm.

Produces the out-of-fold evidence every audit check relies on: probabilities,
logits, embeddings, fold assignment, masked re-scoring and learning histories,
all written into the run directory (see :mod:`audit.rundir`).

Typical use::

    from audit.rundir import RunDir
    from training import TrainConfig, train_run

    summary = train_run(RunDir("runs/demo"), TrainConfig(epochs=20))
    print(summary.text)

Importing this package has no side effects (torch and timm are imported by the
submodules that need them). The ingestion subpackage :mod:`ingest` is
separate and not re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "MASKED_VARIANTS",
    "DeviceSetup",
    "FoldResult",
    "TrainConfig",
    "TrainSummary",
    "assign_folds",
    "create_model",
    "resolve_device_setup",
    "train_fold",
    "train_run",
]

_EXPORTS = {
    "MASKED_VARIANTS": "training.masking",
    "DeviceSetup": "training.device",
    "FoldResult": "training.fold",
    "TrainConfig": "training.config",
    "TrainSummary": "training.cv",
    "assign_folds": "training.folds",
    "create_model": "training.models",
    "resolve_device_setup": "training.device",
    "train_fold": "training.fold",
    "train_run": "training.cv",
}

if TYPE_CHECKING:  # pragma: no cover
    from training.config import TrainConfig
    from training.cv import TrainSummary, train_run
    from training.device import DeviceSetup, resolve_device_setup
    from training.fold import FoldResult, train_fold
    from training.folds import assign_folds
    from training.masking import MASKED_VARIANTS
    from training.models import create_model


def __getattr__(name: str) -> Any:
    """Import public names lazily, so ``import training`` stays cheap."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
