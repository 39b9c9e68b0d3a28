"""The evidence a check sees: :class:`AuditContext`.

A check never opens files. It receives an :class:`AuditContext` that hands out
the run directory's artifacts by *evidence name*, loading each lazily and once.
The same context can be built from in-memory arrays (tests, or predictions of a
model trained elsewhere) with :meth:`AuditContext.from_arrays`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pandera.errors import SchemaErrors

from audit._schemas import (
    ANNOTATOR_PREFIX,
    CORE_COLUMNS,
    RUN_MANIFEST_SCHEMA,
    UNLABELED,
    UNLABELED_NAME,
    annotator_columns,
    format_schema_errors,
)
from audit.rundir import HISTORY, LEARNING_CURVE, RunArtifactMissingError, RunDir

__all__ = ["ANNOTATOR_PREFIX", "CORE_COLUMNS", "EVIDENCE", "REFERENCE_KEY", "UNLABELED",
           "AuditContext", "Evidence", "ReferenceRun", "annotator_columns", "load_reference"]

#: ``run.json`` section naming the reference run of a deployment batch (``{"path": ...}``).
REFERENCE_KEY = "reference"


@dataclass(frozen=True)
class ReferenceRun:
    """The evidence of a reference (training) run, for checks that compare two runs.

    Attributes
    ----------
    manifest : pandas.DataFrame
        The reference run's manifest (R rows).
    class_names : list of str
    pred_probs : numpy.ndarray or None
        ``(R, K)`` out-of-fold (or held-out) probabilities.
    folds : numpy.ndarray or None
        ``(R,)`` fold of each row (``-1``: not out-of-fold, e.g. a held-out split).
    embeddings : numpy.ndarray or None
        ``(R, D)``.
    image_properties : pandas.DataFrame or None
    name : str
        The reference run's folder name (for messages).
    """

    manifest: pd.DataFrame
    class_names: list[str]
    pred_probs: np.ndarray | None = None
    folds: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    image_properties: pd.DataFrame | None = None
    name: str = "reference"

    @property
    def labels(self) -> np.ndarray:
        """``(R,)`` int64 labels (``UNLABELED`` where none)."""
        return self.manifest["label"].to_numpy(dtype=np.int64)

    @property
    def groups(self) -> np.ndarray:
        """``(R,)`` patient keys."""
        return self.manifest["patient_key"].astype(str).to_numpy()


def load_reference(run: RunDir) -> ReferenceRun:
    """The :class:`ReferenceRun` of a run directory (arrays it lacks are None)."""

    def arr(name: str) -> np.ndarray | None:
        return run.read_array(name) if run.has(name) else None

    props = run.read_image_properties() if run.has("image_properties.parquet") else None
    return ReferenceRun(run.read_manifest(), run.class_names(), arr("oof/pred_probs"),
                        arr("oof/folds"), arr("oof/embeddings"), props, run.path.name)

Evidence = Literal[
    "pred_probs",
    "pred_probs_by_fold",
    "logits",
    "embeddings",
    "folds",
    "images",
    "image_properties",
    "history",
    "masked",
    "reference",
    "in_sample_probs",
    "learning_curve",
]
#: Evidence names a check may require (besides the manifest, always present).
EVIDENCE: tuple[str, ...] = get_args(Evidence)

#: Warning when :meth:`AuditContext.from_arrays` gets a manifest without ``patient_key``.
MSG_NO_PATIENT_KEY = (
    "manifest has no 'patient_key' column: each row is treated as its own patient, so the "
    "checks cannot see several images of one patient; add patient_key (one value per patient) "
    "or use medaudit.audit_predictions(..., patient_ids=...), which pseudonymizes them"
)
MSG_NO_SAMPLE_ID = (
    "manifest has no 'sample_id' column: rows are named by their position ('0', '1', ...)"
)
MSG_BAD_MANIFEST = "manifest given to AuditContext.from_arrays is not a valid run manifest:\n{lines}"
MSG_EVIDENCE_ROWS = (
    "evidence {name!r} has {got} rows but the manifest has {n}; every array must have one row "
    "per manifest row, in manifest order"
)

_ARRAY_NAMES = {
    "pred_probs": "oof/pred_probs",
    "pred_probs_by_fold": "oof/pred_probs_by_fold",
    "logits": "oof/logits",
    "embeddings": "oof/embeddings",
    "folds": "oof/folds",
    "images": "images",
    "in_sample_probs": "train/in_sample_probs",
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
        """Context from in-memory evidence (no run directory), validated once here.

        Missing core columns are filled where a default is safe: ``sample_id``
        (the row position) and ``patient_key`` (one patient per row) with a
        warning, ``label_name`` from ``class_names``. The manifest is then
        checked against the run-manifest schema (:mod:`audit._schemas`), labels
        against ``class_names``, and every array's row count against the
        manifest, so that a problem is one clear error here rather than a
        failed check later.

        Parameters
        ----------
        manifest : pandas.DataFrame
            N rows; ``label`` (class index) required.
        class_names : list of str
            K names in label-index order.
        **evidence
            Arrays by evidence name (:data:`EVIDENCE`), N rows each.

        Returns
        -------
        AuditContext

        Raises
        ------
        ValueError
            For a missing ``label`` column, a manifest that violates the schema
            (every failure listed), a label outside ``[0, K)``, an unknown
            evidence name or an array whose row count is not N.

        Warns
        -----
        UserWarning
            When ``sample_id`` or ``patient_key`` had to be filled.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> man = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": [0, 1, 0],
        ...                     "patient_key": ["p1", "p2", "p3"]})
        >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
        >>> ctx = AuditContext.from_arrays(man, ["neg", "pos"], pred_probs=p)
        >>> ctx.n, list(ctx.manifest["label_name"])
        (3, ['neg', 'pos', 'neg'])
        """
        manifest = _complete_manifest(manifest, list(class_names))
        ctx = cls(manifest, class_names, evidence=evidence)
        for name, value in ctx._cache.items():
            rows = _rows(value)
            if rows is not None and rows != ctx.n:
                raise ValueError(MSG_EVIDENCE_ROWS.format(name=name, got=rows, n=ctx.n))
        return ctx

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
    def has_labels(self) -> bool:
        """Whether every row has a label (False for unlabeled deployment batches)."""
        return bool(self.n) and bool((self.labels >= 0).all())

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
        if name == "learning_curve":
            return self.run.has(LEARNING_CURVE)
        if name == "masked":
            return bool(self.run.masked_variants())
        if name == "reference":
            path = self.run.read_run_json().get(REFERENCE_KEY, {}).get("path")
            return bool(path) and RunDir(path).has("manifest.parquet")
        return self.run.has(_ARRAY_NAMES[name])

    def get(self, name: str) -> Any:
        """Evidence ``name``, loaded once.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame or dict
            ``pred_probs`` / ``logits`` ``(N, K)``, ``pred_probs_by_fold``
            ``(N, F, K)`` (each fold model's probabilities of a ``medaudit predict``
            batch), ``embeddings`` ``(N, D)``,
            ``folds`` ``(N,)``, ``images`` ``(N, C, S, S)`` (memory-mapped),
            ``image_properties`` an N-row frame, ``history`` a dict, ``masked``
            a dict variant -> ``(N, K)``, ``in_sample_probs`` ``(N, F, K)``
            (NaN where fold ``f``'s model was not fitted on the row),
            ``learning_curve`` a dict (``train/learning_curve.json``).

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
        elif name == "learning_curve":
            value = self.run.read_json(LEARNING_CURVE)
        elif name == "masked":
            value = {v: self.run.read_array(f"oof/masked/{v}") for v in self.run.masked_variants()}
        elif name == "reference":
            value = load_reference(RunDir(self.run.read_run_json()[REFERENCE_KEY]["path"]))
        else:
            value = self.run.read_array(_ARRAY_NAMES[name], mmap=name == "images")
        self._cache[name] = value
        return value


def _rows(value: Any) -> int | None:
    """Row count of a piece of evidence (None for ``history``)."""
    if isinstance(value, dict):
        counts = {_rows(v) for v in value.values()} - {None}
        return counts.pop() if len(counts) == 1 else None
    if isinstance(value, (np.ndarray, pd.DataFrame)):
        return int(value.shape[0])
    return None


def _complete_manifest(manifest: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """Fill safe defaults for missing core columns, then validate (see ``from_arrays``)."""
    if not isinstance(manifest, pd.DataFrame):
        raise TypeError(f"manifest must be a pandas DataFrame; got {type(manifest).__name__}")
    m = manifest.reset_index(drop=True).copy()
    if "label" not in m.columns:
        raise ValueError(MSG_BAD_MANIFEST.format(
            lines=f"no 'label' column (columns: {list(m.columns)}); add the given class index "
            "of every row"))
    if "sample_id" not in m.columns:
        warnings.warn(MSG_NO_SAMPLE_ID, stacklevel=3)
        m.insert(0, "sample_id", [str(i) for i in range(len(m))])
    k = len(class_names)
    label = pd.to_numeric(m["label"], errors="coerce")
    bad = label.isna() | ((label < 0) & (label != UNLABELED)) | (label >= k) | (label != label.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        value = m["label"].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        raise ValueError(MSG_BAD_MANIFEST.format(
            lines=f"column 'label' must be class indices in [0, {k}) (class_names has {k} "
            f"names); got {value!r} at row {i} (sample_id "
            f"{str(m['sample_id'].iloc[i])!r}); {int(bad.sum())} such row(s)"))
    m["label"] = label.astype(np.int64)
    if "label_name" not in m.columns:
        m.insert(list(m.columns).index("label") + 1, "label_name",
                 [class_names[i] if i >= 0 else UNLABELED_NAME for i in m["label"]])
    if "patient_key" not in m.columns:
        warnings.warn(MSG_NO_PATIENT_KEY, stacklevel=3)
        m.insert(list(m.columns).index("label_name") + 1, "patient_key",
                 "row-" + m["sample_id"].astype(str))
    try:
        return RUN_MANIFEST_SCHEMA.validate(m, lazy=True)
    except SchemaErrors as err:
        raise ValueError(MSG_BAD_MANIFEST.format(
            lines=format_schema_errors(err, source="manifest"))) from None
