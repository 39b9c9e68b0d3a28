"""The run directory: the one contract between medaudit's packages.

Every artifact that passes from ingestion to training to the audit checks to the
reports lives in one folder on disk (see ``docs/architecture.md``). This module
names those artifacts, reads and writes them, and validates on every read that
their shapes and row order agree with ``manifest.parquet``.

Rows of every per-sample array follow the row order of the manifest. Writes are
atomic (a temporary file renamed into place), so an interrupted stage never leaves
a half-written artifact that a later stage would trust.

Layout
------
==================================  ===============================================
``manifest.parquet``                one row per accepted image (schema below)
``quarantine.csv``                  refused inputs: ``source``, ``reason``
``images.npy``                      image cache, ``(N, C, S, S)`` uint8, memory-mapped
``image_properties.parquet``        per-image statistics, N rows, ``sample_id`` first
``oof/pred_probs.npy``              ``(N, K)`` float32 out-of-fold probabilities
``oof/logits.npy``                  ``(N, K)`` float32 out-of-fold logits
``oof/embeddings.npy``              ``(N, D)`` float32 penultimate features
``oof/folds.npy``                   ``(N,)`` int16 fold of each row; ``-1`` = held-out
                                    row scored by the fold ensemble (not OOF)
``oof/masked/<variant>.npy``        ``(N, K)`` float32 probabilities on masked images
``train/history.json``              per fold and epoch learning curves
``train/fold_<k>.pt``               fold checkpoints (state dict only)
``run.json``                        config, seeds, versions, input hashes, timings
``findings.json``                   list of findings
==================================  ===============================================
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit._schemas import validate_run_manifest

__all__ = [
    "ARRAY_SPECS",
    "RunArtifactMissingError",
    "RunDir",
    "RunDirMismatchError",
    "atomic_write",
]

MANIFEST = "manifest.parquet"
QUARANTINE = "quarantine.csv"
IMAGES = "images.npy"
IMAGE_PROPERTIES = "image_properties.parquet"
RUN_JSON = "run.json"
FINDINGS = "findings.json"
HISTORY = "train/history.json"
MASKED_DIR = "oof/masked"

QUARANTINE_COLUMNS = ("source", "reason")

_MISSING_TEMPLATE = (
    "run directory {run} has no {name!r} ({what}); {fix}"
)
_ROWS_TEMPLATE = (
    "{name!r} in run directory {run} has {got} rows but manifest.parquet has {expected}; "
    "the artifact is stale or from another run: re-run the stage that writes it"
)


class RunArtifactMissingError(FileNotFoundError):
    """An artifact the caller needs is not in the run directory."""


class RunDirMismatchError(ValueError):
    """An artifact disagrees with the manifest (row count, shape or dtype)."""


@dataclass(frozen=True)
class _ArraySpec:
    """Expected layout of a per-sample array in the run directory."""

    ndim: int
    kind: str  # numpy dtype kind letters accepted, e.g. "f" or "iu"
    what: str
    fix: str


#: Per-sample arrays of the contract, by name relative to the run directory
#: (without ``.npy``). ``oof/masked/<variant>`` follows ``oof/pred_probs``.
ARRAY_SPECS: dict[str, _ArraySpec] = {
    "oof/pred_probs": _ArraySpec(2, "f", "out-of-fold probabilities (N, K)", "run `medaudit train`"),
    "oof/logits": _ArraySpec(2, "f", "out-of-fold logits (N, K)", "run `medaudit train`"),
    "oof/embeddings": _ArraySpec(2, "f", "out-of-fold embeddings (N, D)", "run `medaudit train`"),
    "oof/folds": _ArraySpec(1, "iu", "fold index of each row (N,)", "run `medaudit train`"),
    "images": _ArraySpec(4, "uf", "image cache (N, C, S, S)", "run `medaudit ingest`"),
}
_MASKED_SPEC = _ArraySpec(
    2, "f", "out-of-fold probabilities on masked images (N, K)", "run `medaudit train`"
)


def atomic_write(path: Path, write: Any) -> None:
    """Write a file atomically: ``write(tmp_path)`` then rename into ``path``.

    Parameters
    ----------
    path : Path
        Final destination; parent folders are created.
    write : callable
        Called with a temporary path in the same folder; must create that file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _spec_for(name: str) -> _ArraySpec:
    if name in ARRAY_SPECS:
        return ARRAY_SPECS[name]
    if name.startswith(MASKED_DIR + "/"):
        return _MASKED_SPEC
    raise ValueError(
        f"unknown run-directory array {name!r}; expected one of "
        f"{sorted(ARRAY_SPECS)} or '{MASKED_DIR}/<variant>'"
    )


@dataclass(frozen=True)
class RunDir:
    """Typed access to one run directory.

    Parameters
    ----------
    path : str or PathLike
        The folder. It need not exist yet for writing.

    Examples
    --------
    >>> run = RunDir("runs/demo")                          # doctest: +SKIP
    >>> manifest = run.read_manifest()                     # doctest: +SKIP
    >>> probs = run.read_array("oof/pred_probs")           # doctest: +SKIP
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    # -- paths ---------------------------------------------------------------
    def file(self, name: str) -> Path:
        """Path of an artifact given by its contract name (``.npy`` added for arrays)."""
        if name in ARRAY_SPECS or name.startswith(MASKED_DIR + "/"):
            return self.path / f"{name}.npy"
        return self.path / name

    def has(self, name: str) -> bool:
        """Whether the artifact ``name`` exists."""
        return self.file(name).exists()

    def _require(self, name: str, what: str, fix: str) -> Path:
        p = self.file(name)
        if not p.exists():
            raise RunArtifactMissingError(
                _MISSING_TEMPLATE.format(run=self.path, name=name, what=what, fix=fix)
            )
        return p

    def masked_variants(self) -> list[str]:
        """Names of the masked re-scoring variants present (``oof/masked/*.npy``)."""
        d = self.path / MASKED_DIR
        return sorted(p.stem for p in d.glob("*.npy")) if d.exists() else []

    # -- manifest ------------------------------------------------------------
    def read_manifest(self) -> pd.DataFrame:
        """Read and validate ``manifest.parquet``.

        Returns
        -------
        pandas.DataFrame
            N rows; columns ``sample_id``, ``label``, ``label_name``,
            ``patient_key`` and optional metadata.

        Raises
        ------
        RunArtifactMissingError
            When the run has not been ingested.
        ValueError
            When the manifest violates the schema.
        """
        p = self._require(MANIFEST, "one row per accepted image", "run `medaudit ingest` first")
        return validate_run_manifest(pd.read_parquet(p), source=str(p))

    def write_manifest(self, manifest: pd.DataFrame) -> None:
        """Validate and write ``manifest.parquet`` (index dropped)."""
        manifest = validate_run_manifest(manifest.reset_index(drop=True), source="manifest")
        atomic_write(self.file(MANIFEST), lambda t: manifest.to_parquet(t, index=False))

    def n_samples(self) -> int:
        """Number of rows in the manifest (cheap: reads the parquet metadata only)."""
        import pyarrow.parquet as pq

        p = self._require(MANIFEST, "one row per accepted image", "run `medaudit ingest` first")
        return int(pq.ParquetFile(p).metadata.num_rows)

    def class_names(self) -> list[str]:
        """Class names in label-index order, from ``run.json`` (``classes``)."""
        names = self.read_run_json().get("classes")
        if not names:
            raise RunArtifactMissingError(
                f"run directory {self.path} has no class names in run.json ('classes'); "
                "run `medaudit ingest` first"
            )
        return [str(n) for n in names]

    # -- quarantine ------------------------------------------------------------
    def read_quarantine(self) -> pd.DataFrame:
        """Refused inputs (``source``, ``reason``); empty frame when none were refused."""
        p = self.file(QUARANTINE)
        if not p.exists():
            return pd.DataFrame(columns=list(QUARANTINE_COLUMNS))
        return pd.read_csv(p, dtype=str, keep_default_na=False)

    def write_quarantine(self, rows: pd.DataFrame) -> None:
        """Write ``quarantine.csv`` (columns ``source``, ``reason`` first)."""
        missing = [c for c in QUARANTINE_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"quarantine rows need columns {list(QUARANTINE_COLUMNS)}; missing {missing}")
        cols = list(QUARANTINE_COLUMNS) + [c for c in rows.columns if c not in QUARANTINE_COLUMNS]
        atomic_write(self.file(QUARANTINE), lambda t: rows[cols].to_csv(t, index=False))

    # -- arrays ----------------------------------------------------------------
    def read_array(self, name: str, *, mmap: bool = False) -> np.ndarray:
        """Read a per-sample array and check it against the manifest.

        Parameters
        ----------
        name : str
            Contract name, e.g. ``"oof/pred_probs"``, ``"images"`` or
            ``"oof/masked/center_masked"``.
        mmap : bool
            Memory-map instead of loading (use for ``images``).

        Returns
        -------
        numpy.ndarray
            First axis of length N (rows of the manifest).

        Raises
        ------
        RunArtifactMissingError
            When the file is absent.
        RunDirMismatchError
            When its row count, rank or dtype disagree with the contract.
        """
        spec = _spec_for(name)
        p = self._require(name, spec.what, spec.fix)
        arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        self._check_array(name, arr, spec)
        return arr

    def write_array(self, name: str, array: np.ndarray) -> None:
        """Validate and atomically write a per-sample array (see :data:`ARRAY_SPECS`)."""
        spec = _spec_for(name)
        arr = np.asarray(array)
        self._check_array(name, arr, spec)

        def _save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.save would append ".npy" to a path
                np.save(fh, arr, allow_pickle=False)

        atomic_write(self.file(name), _save)

    def _check_array(self, name: str, arr: np.ndarray, spec: _ArraySpec) -> None:
        if arr.ndim != spec.ndim:
            raise RunDirMismatchError(
                f"{name!r} in run directory {self.path} must have {spec.ndim} dimensions "
                f"({spec.what}); got shape {arr.shape}"
            )
        if arr.dtype.kind not in spec.kind:
            raise RunDirMismatchError(
                f"{name!r} in run directory {self.path} must have dtype kind in {spec.kind!r} "
                f"({spec.what}); got {arr.dtype}"
            )
        if self.file(MANIFEST).exists():
            n = self.n_samples()
            if arr.shape[0] != n:
                raise RunDirMismatchError(
                    _ROWS_TEMPLATE.format(name=name, run=self.path, got=arr.shape[0], expected=n)
                )

    # -- tables ------------------------------------------------------------------
    def read_image_properties(self) -> pd.DataFrame:
        """Read ``image_properties.parquet`` and check its ``sample_id`` order."""
        p = self._require(IMAGE_PROPERTIES, "per-image statistics", "run `medaudit ingest`")
        props = pd.read_parquet(p)
        self._check_rows(IMAGE_PROPERTIES, props)
        return props

    def write_image_properties(self, props: pd.DataFrame) -> None:
        """Write ``image_properties.parquet`` (must start with the manifest's ``sample_id``)."""
        self._check_rows(IMAGE_PROPERTIES, props)
        atomic_write(self.file(IMAGE_PROPERTIES), lambda t: props.to_parquet(t, index=False))

    def _check_rows(self, name: str, table: pd.DataFrame) -> None:
        if "sample_id" not in table.columns:
            raise RunDirMismatchError(f"{name!r} in run directory {self.path} has no 'sample_id' column")
        if not self.file(MANIFEST).exists():
            return
        ids = pd.read_parquet(self.file(MANIFEST), columns=["sample_id"])["sample_id"]
        if len(ids) != len(table):
            raise RunDirMismatchError(
                _ROWS_TEMPLATE.format(name=name, run=self.path, got=len(table), expected=len(ids))
            )
        bad = np.flatnonzero(ids.to_numpy() != table["sample_id"].to_numpy())
        if bad.size:
            raise RunDirMismatchError(
                f"{name!r} in run directory {self.path} is not in manifest row order: row {bad[0]} "
                f"has sample_id {table['sample_id'].iloc[bad[0]]!r}, manifest has {ids.iloc[bad[0]]!r}"
            )

    # -- json ----------------------------------------------------------------------
    def read_json(self, name: str) -> Any:
        """Read a JSON artifact (``run.json``, ``findings.json``, ``train/history.json``)."""
        p = self._require(name, "JSON artifact", "run the stage that writes it")
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)

    def write_json(self, name: str, obj: Any) -> None:
        """Atomically write a JSON artifact (UTF-8, indented, NaN refused)."""
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=_json_default)
        atomic_write(self.file(name), lambda t: t.write_text(text + "\n", encoding="utf-8"))

    def read_run_json(self) -> dict[str, Any]:
        """``run.json`` as a dict (empty when absent)."""
        return self.read_json(RUN_JSON) if self.has(RUN_JSON) else {}

    def update_run_json(self, updates: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into ``run.json`` (top-level keys replaced) and write it."""
        with self._lock():
            data = self.read_run_json()
            data.update(updates)
            self.write_json(RUN_JSON, data)
        return data

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """A process lock on the run directory (POSIX ``flock``; no-op elsewhere)."""
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        with open(self.path / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
