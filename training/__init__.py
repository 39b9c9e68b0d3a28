"""medaudit training core: patient-grouped K-fold training with timm.

Produces the out-of-fold evidence every audit check relies on: probabilities,
logits, embeddings, fold assignment, masked re-scoring and learning histories,
all written into the run directory (see :mod:`audit.rundir`).

Typical use::

    from audit.rundir import RunDir
    from training import TrainConfig, train_run

    summary = train_run(RunDir("runs/demo"), TrainConfig(epochs=20))
    print(summary.text)

Modules, one job each:

* :mod:`training.config`: :class:`TrainConfig`, the one description of a run;
* :mod:`training.messages`: user-facing messages kept as constants;
* :mod:`training.splits`: patient-grouped fold assignment and the inner split;
* :mod:`training.run_context`: what every fold reads once (labels, folds, fingerprint);
* :mod:`training.reproducibility`: seeds, deterministic kernels, CPU threads;
* :mod:`training.device`: device, precision and model placement;
* :mod:`training.small_conv`: convolutions on tiny maps as matrix products;
* :mod:`training.models`: timm models and weights files;
* :mod:`training.dataset`, :mod:`training.augment`, :mod:`training.masking`:
  batches from the image cache, augmentation and mixup, masked variants;
* :mod:`training.predict`: scoring rows with a model;
* :mod:`training.loop`: one training pass (:func:`training.loop.fit_model`);
* :mod:`training.fold_training`: one fold and its ensemble (:func:`train_fold`);
* :mod:`training.fold_outputs`: a fold's files, resume marker and summary;
* :mod:`training.linear_probe`: the folds of ``mode='linear-probe'``;
* :mod:`training.cv`: the whole run (:func:`train_run`).

Importing this package has no side effects (torch and timm are imported by the
submodules that need them). The ingestion stage package :mod:`ingest` is
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
    "FoldResult": "training.fold_outputs",
    "TrainConfig": "training.config",
    "TrainSummary": "training.cv",
    "assign_folds": "training.splits",
    "create_model": "training.models",
    "resolve_device_setup": "training.device",
    "train_fold": "training.fold_training",
    "train_run": "training.cv",
}

if TYPE_CHECKING:  # pragma: no cover
    from training.config import TrainConfig
    from training.cv import TrainSummary, train_run
    from training.device import DeviceSetup, resolve_device_setup
    from training.fold_outputs import FoldResult
    from training.fold_training import train_fold
    from training.masking import MASKED_VARIANTS
    from training.models import create_model
    from training.splits import assign_folds


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
