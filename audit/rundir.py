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
``oof/pred_probs_by_fold.npy``      ``(N, F, K)`` float32 each fold model's probabilities
                                    of a batch scored by ``medaudit predict`` (their
                                    mean over F is ``oof/pred_probs``)
``oof/logits.npy``                  ``(N, K)`` float32 out-of-fold logits
``oof/embeddings.npy``              ``(N, D)`` float32 penultimate features
``oof/folds.npy``                   ``(N,)`` int16 fold of each row; ``-1`` = held-out
                                    row scored by the fold ensemble (not OOF)
``oof/masked/<variant>.npy``        ``(N, K)`` float32 probabilities on masked images
``train/in_sample_probs.npy``       ``(N, F, K)`` float32 fold ``f``'s prediction on the
                                    rows it was fitted on, NaN elsewhere (in-sample)
``train/history.json``              per fold and epoch learning curves
``train/learning_curve.json``       OOF AUC per training fraction (``--learning-curve``)
``train/fold_<k>.pt``               fold checkpoints (state dict only)
``run.json``                        config, seeds, versions, input hashes, timings
``findings.json``                   list of findings
==================================  ===============================================
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit._schemas import validate_run_manifest
from audit.transaction import RunTransaction, writer_lock

__all__ = [
    "ARRAY_SPECS",
    "STAGE_OUTPUTS",
    "RunArtifactMissingError",
    "RunDir",
    "RunDirCorruptError",
    "RunDirMismatchError",
    "atomic_write",
    "stale_after",
]

MANIFEST = "manifest.parquet"
QUARANTINE = "quarantine.csv"
IMAGES = "images.npy"
IMAGE_PROPERTIES = "image_properties.parquet"
RUN_JSON = "run.json"
FINDINGS = "findings.json"
HISTORY = "train/history.json"
LEARNING_CURVE = "train/learning_curve.json"
MASKED_DIR = "oof/masked"

QUARANTINE_COLUMNS = ("source", "reason")

#: What each stage writes (paths relative to the run directory). A stage that
#: publishes new outputs removes its own old ones and those of every later stage,
#: whose inputs it has just changed (:func:`stale_after`).
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "ingest": (MANIFEST, QUARANTINE, IMAGES, IMAGE_PROPERTIES),
    "train": ("oof", "train", ".work"),
    "audit": (FINDINGS,),
    "report": ("report.html", "report.json", "report.pdf", "report"),
}
#: ``run.json`` section written by each stage.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("classes", "ingest", "source", "external"),
    "train": ("train",),
    "audit": ("audit",),
    "report": ("report",),
}


def stale_after(stage: str) -> tuple[list[str], list[str]]:
    """Outputs and ``run.json`` sections made stale when ``stage`` publishes new outputs.

    Parameters
    ----------
    stage : {'ingest', 'train', 'audit', 'report'}

    Returns
    -------
    paths : list of str
        The stage's own outputs and every later stage's.
    sections : list of str
        The ``run.json`` sections of the later stages.
    """
    order = list(STAGE_OUTPUTS)
    if stage not in order:
        raise ValueError(f"unknown stage {stage!r}; valid stages: {order}")
    later = order[order.index(stage):]
    paths = [p for s in later for p in STAGE_OUTPUTS[s]]
    sections = [k for s in later[1:] for k in STAGE_SECTIONS[s]]
    return paths, sections

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


class RunDirCorruptError(ValueError):
    """An artifact cannot be read (damaged, truncated or not what its name says)."""


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
    "oof/pred_probs_by_fold": _ArraySpec(
        3, "f", "each fold model's probabilities of a scored batch (N, F, K)",
        "run `medaudit predict`"),
    "oof/embeddings": _ArraySpec(2, "f", "out-of-fold embeddings (N, D)", "run `medaudit train`"),
    "oof/folds": _ArraySpec(1, "iu", "fold index of each row (N,)", "run `medaudit train`"),
    "images": _ArraySpec(4, "uf", "image cache (N, C, S, S)", "run `medaudit ingest`"),
    "train/in_sample_probs": _ArraySpec(
        3, "f", "in-sample probabilities of each fold's model (N, F, K), NaN where the fold's "
        "model was not fitted on the row", "run `medaudit train`"),
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


def _relative(name: str) -> str:
    """Relative path of a contract name (``.npy`` added for arrays)."""
    if name in ARRAY_SPECS or name.startswith(MASKED_DIR + "/"):
        return f"{name}.npy"
    return name


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
        object.__setattr__(self, "_published", None)
        object.__setattr__(self, "_tx", None)

    @classmethod
    def _staged(cls, published: RunDir, tx: RunTransaction) -> RunDir:
        run = cls(tx.staging)
        object.__setattr__(run, "_published", published)
        object.__setattr__(run, "_tx", tx)
        return run

    # -- transactions ------------------------------------------------------------
    @contextmanager
    def transaction(self, stage: str) -> Iterator[RunDir]:
        """Change this run directory as one unit (see :mod:`audit.transaction`).

        Holds the writer lock for the whole block and yields a *staged* view:
        writes go to a staging folder, reads fall back to the published run
        (except paths scheduled for removal with :meth:`remove`), and
        :meth:`update_run_json` is applied at publish time. Leaving the block
        normally publishes everything at once; an exception discards it.

        Parameters
        ----------
        stage : str
            Shown to a second writer, e.g. ``"medaudit train"``.

        Raises
        ------
        audit.transaction.RunDirBusyError
            When another process is writing this run directory.
        """
        if self._tx is not None:  # nested: the outer transaction publishes
            yield self
            return
        with writer_lock(self.path, stage):
            tx = RunTransaction(self.path, stage)
            staged = RunDir._staged(self, tx)
            try:
                yield staged
            except BaseException:
                tx.abort()
                raise
            tx.commit(self.read_run_json, lambda p, obj: RunDir(p.parent).write_json(p.name, obj))

    def writer_lock(self, stage: str) -> contextlib.AbstractContextManager[None]:
        """The exclusive writer lock alone (see :func:`audit.transaction.writer_lock`)."""
        return writer_lock(self.path, stage)

    def remove(self, names: Iterable[str]) -> None:
        """Schedule artifacts (files or folders) for removal when the transaction publishes.

        Raises
        ------
        RuntimeError
            Outside a transaction.
        """
        if self._tx is None:
            raise RuntimeError("RunDir.remove is only available inside RunDir.transaction()")
        self._tx.remove(names)

    def _removed(self, name: str) -> bool:
        if self._tx is None:
            return False
        rel = name.rstrip("/")
        return any(rel == r or rel.startswith(r.rstrip("/") + "/") for r in self._tx._remove)

    # -- paths ---------------------------------------------------------------
    def file(self, name: str) -> Path:
        """Path of an artifact given by its contract name (``.npy`` added for arrays).

        In a staged view this is where the artifact is *written*; reads use
        :meth:`_source`.
        """
        return self.path / _relative(name)

    def _source(self, name: str) -> Path:
        """Where artifact ``name`` is read from (staged, else published unless removed)."""
        staged = self.file(name)
        if self._published is None or staged.exists() or self._removed(_relative(name)):
            return staged
        return self._published.file(name)

    def has(self, name: str) -> bool:
        """Whether the artifact ``name`` exists."""
        return self._source(name).exists()

    def _require(self, name: str, what: str, fix: str) -> Path:
        p = self._source(name)
        if not p.exists():
            raise RunArtifactMissingError(
                _MISSING_TEMPLATE.format(run=self.path, name=name, what=what, fix=fix)
            )
        return p

    def masked_variants(self) -> list[str]:
        """Names of the masked re-scoring variants present (``oof/masked/*.npy``)."""
        found: set[str] = set()
        for root in (self.path, None if self._published is None or self._removed(MASKED_DIR)
                     else self._published.path):
            d = root / MASKED_DIR if root is not None else None
            if d is not None and d.is_dir():
                found |= {p.stem for p in d.glob("*.npy")}
        return sorted(found)

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
        p = self._source(QUARANTINE)
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
        try:
            arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise RunDirCorruptError(
                f"{p} cannot be read as {spec.what} ({err}); it is truncated or damaged: "
                f"{spec.fix} again"
            ) from None
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
        if self._source(MANIFEST).exists():
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
        if not self._source(MANIFEST).exists():
            return
        ids = pd.read_parquet(self._source(MANIFEST), columns=["sample_id"])["sample_id"]
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
        try:
            with open(p, encoding="utf-8") as fh:
                return json.load(fh)
        except (ValueError, UnicodeDecodeError) as err:
            raise RunDirCorruptError(
                f"{p} is not valid JSON ({err}); it was damaged or edited by hand: restore it "
                "or re-run the stage that writes it"
            ) from None

    def write_json(self, name: str, obj: Any) -> None:
        """Atomically write a JSON artifact (UTF-8, indented, NaN refused)."""
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=_json_default)
        atomic_write(self.file(name), lambda t: t.write_text(text + "\n", encoding="utf-8"))

    def read_run_json(self) -> dict[str, Any]:
        """``run.json`` as a dict (empty when absent); in a staged view, with pending updates."""
        data = self.read_json(RUN_JSON) if self.has(RUN_JSON) else {}
        tx = self._tx
        if tx is not None:
            if tx._replace_run_json:
                data = {}
            for k in tx._drop_sections:
                data.pop(k, None)
            data.update(tx._run_json or {})
        return data

    def update_run_json(self, updates: Mapping[str, Any], *, drop: Iterable[str] = (),
                        replace: bool = False) -> dict[str, Any]:
        """Merge ``updates`` into ``run.json`` (top-level keys replaced).

        Outside a transaction the file is rewritten at once (under the writer
        lock); inside one the change is applied when the transaction publishes.

        Parameters
        ----------
        updates : mapping
            Top-level keys to set.
        drop : iterable of str
            Top-level keys to remove (sections made stale).
        replace : bool
            Start from an empty ``run.json``.
        """
        if self._tx is not None:
            self._tx.update_run_json(updates, drop=drop, replace=replace)
            return self.read_run_json()
        with writer_lock(self.path, "update run.json"):
            data = {} if replace else self.read_run_json()
            for k in drop:
                data.pop(k, None)
            data.update(updates)
            self.write_json(RUN_JSON, data)
        return data


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
