"""medaudit's ingestion stage: every way data enters a run directory.

Manifests (CSV + PNG / JPEG / TIFF / DICOM / .npy files), DICOM folders with a
labels table, MedMNIST-layout npz files and the predictions of a model trained
elsewhere all pass through this package: validation (pandera, lazily, every bad
row reported), decoding, the one identifier filter and the one pseudonymizer,
the image cache, image properties, and the demo-data generator.

It imports nothing of ours except the run-directory contract (``audit.rundir``,
``audit._schemas``, ``audit.validation``).

Public API
----------
>>> from ingest import IngestOptions, ingest_manifest        # doctest: +SKIP
>>> summary = ingest_manifest("data.csv", "runs/r1", IngestOptions(image_size=64))  # doctest: +SKIP
>>> print(summary.text)                                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "IngestOptions",
    "IngestSummary",
    "ManifestError",
    "ingest_dicom_dir",
    "ingest_manifest",
    "ingest_npz",
    "ingest_predictions",
    "load_or_create_secret",
    "pseudonymize",
]

_EXPORTS = {
    "IngestOptions": "ingest.sources",
    "IngestSummary": "ingest.sources",
    "ManifestError": "ingest.manifest",
    "ingest_dicom_dir": "ingest.sources",
    "ingest_manifest": "ingest.sources",
    "ingest_npz": "ingest.sources",
    "ingest_predictions": "ingest.predictions",
    "load_or_create_secret": "ingest.pseudonymize",
    "pseudonymize": "ingest.pseudonymize",
}

if TYPE_CHECKING:  # pragma: no cover
    from ingest.manifest import ManifestError
    from ingest.predictions import ingest_predictions
    from ingest.pseudonymize import load_or_create_secret, pseudonymize
    from ingest.sources import (
        IngestOptions,
        IngestSummary,
        ingest_dicom_dir,
        ingest_manifest,
        ingest_npz,
    )


def __getattr__(name: str) -> Any:
    """Import public names lazily, so ``import ingest`` stays cheap."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
