"""The evidence a check sees: :class:`AuditContext`.

A check never opens files. It receives an :class:`AuditContext` that hands out
the run directory's artifacts by *evidence name*, loading each lazily and once.
The same context can be built from in-memory arrays (tests, or predictions of a
model trained elsewhere) with :meth:`AuditContext.from_arrays`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from audit._schemas import ANNOTATOR_PREFIX, CORE_COLUMNS, annotator_columns
from audit.rundir import HISTORY, RunArtifactMissingError, RunDir

__all__ = ["ANNOTATOR_PREFIX", "CORE_COLUMNS", "EVIDENCE", "AuditContext", "Evidence",
           "annotator_columns"]

Evidence = Literal[
    "pred_probs",
    "logits",
    "embeddings",
    "folds",
    "images",
    "image_properties",
    "history",
    "masked",
]
#: Evidence names a check may require (besides the manifest, always present).
EVIDENCE: tuple[str, ...] = get_args(Evidence)

_ARRAY_NAMES = {
    "pred_probs": "oof/pred_probs",
    "logits": "oof/logits",
    "embeddings": "oof/embeddings",
    "folds": "oof/folds",
    "images": "images",
}


class AuditContext:
    """Lazily loaded evidence of one run, keyed by evidence name.

    Parameters
    ----------
    manifest : pandas.DataFrame
        N rows (validated run manifest: ``sample_id``, ``label``, ``label_name``,
        ``patient_key``, optional metadata).
    class_names : list of str
        K names in label-index order.
    run : RunDir, optional
        Where missing evidence is loaded from.
    evidence : mapping, optional
        Preloaded evidence by name (arrays with N rows; ``image_properties`` a
        frame; ``history`` a dict; ``masked`` a dict variant -> (N, K) array).
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        class_names: list[str],
        *,
        run: RunDir | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> None:
        self.manifest = manifest.reset_index(drop=True)
        self.class_names = list(class_names)
        self.run = run
        self._cache: dict[str, Any] = dict(evidence or {})
        self._sample_ids: np.ndarray | None = None
        unknown = sorted(set(self._cache) - set(EVIDENCE))
        if unknown:
            raise ValueError(f"unknown evidence names {unknown}; valid names: {list(EVIDENCE)}")

    @classmethod
    def from_run_dir(cls, run: RunDir | str) -> AuditContext:
        """Context reading evidence from a run directory on demand."""
        run = run if isinstance(run, RunDir) else RunDir(run)
        return cls(run.read_manifest(), run.class_names(), run=run)

    @classmethod
    def from_arrays(
        cls,
        manifest: pd.DataFrame,
        class_names: list[str],
        **evidence: Any,
    ) -> AuditContext:
        """Context from in-memory evidence (no run directory)."""
        return cls(manifest, class_names, evidence=evidence)

    # -- basic views --------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of samples N."""
        return len(self.manifest)

    @property
    def n_classes(self) -> int:
        """Number of classes K."""
        return len(self.class_names)

    @property
    def labels(self) -> np.ndarray:
        """Given labels, shape ``(N,)`` int64."""
        return self.manifest["label"].to_numpy(dtype=np.int64)

    @property
    def annotator_columns(self) -> list[str]:
        """Manifest columns ``label_<annotator>`` holding individual annotators' labels."""
        return annotator_columns(self.manifest.columns)

    @property
    def sample_ids(self) -> np.ndarray:
        """Sample ids, shape ``(N,)`` object (computed once; do not modify)."""
        if self._sample_ids is None:
            self._sample_ids = self.manifest["sample_id"].astype(str).to_numpy(dtype=object)
        return self._sample_ids

    # -- evidence -------------------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether evidence ``name`` is available (in memory or in the run directory)."""
        if name not in EVIDENCE:
            raise ValueError(f"unknown evidence name {name!r}; valid names: {list(EVIDENCE)}")
        if name in self._cache:
            return True
        if self.run is None:
            return False
        if name == "image_properties":
            return self.run.has("image_properties.parquet")
        if name == "history":
            return self.run.has(HISTORY)
        if name == "masked":
            return bool(self.run.masked_variants())
        return self.run.has(_ARRAY_NAMES[name])

    def get(self, name: str) -> Any:
        """Evidence ``name``, loaded once.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame or dict
            ``pred_probs`` / ``logits`` ``(N, K)``, ``embeddings`` ``(N, D)``,
            ``folds`` ``(N,)``, ``images`` ``(N, C, S, S)`` (memory-mapped),
            ``image_properties`` an N-row frame, ``history`` a dict, ``masked``
            a dict variant -> ``(N, K)``.

        Raises
        ------
        RunArtifactMissingError
            When the evidence is not available.
        """
        if name in self._cache:
            return self._cache[name]
        if not self.has(name):
            raise RunArtifactMissingError(
                f"evidence {name!r} is not available"
                + (f" in run directory {self.run.path}" if self.run else "")
            )
        assert self.run is not None  # has() is False without a run
        if name == "image_properties":
            value: Any = self.run.read_image_properties()
        elif name == "history":
            value = self.run.read_json(HISTORY)
        elif name == "masked":
            value = {v: self.run.read_array(f"oof/masked/{v}") for v in self.run.masked_variants()}
        else:
            value = self.run.read_array(_ARRAY_NAMES[name], mmap=name == "images")
        self._cache[name] = value
        return value
