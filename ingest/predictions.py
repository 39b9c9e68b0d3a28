"""Build a run directory from the predictions of a model trained elsewhere.

A reviewer who receives a model's predictions (not the model) can audit them:
:func:`ingest_predictions` joins a labels table and a prediction table on
``sample_id``, validates them once, and writes a run directory that every
check accepts. No image is needed; checks that need images or image
properties are skipped with their reason.

The labels go through the same validation as a manifest
(:func:`ingest.manifest.validate_label_table`: one label parser, ``sex`` / ``age``
/ annotator columns checked, bad rows quarantined with one line each), metadata
columns through the one identifier filter (:mod:`ingest.identifiers`), and the
run manifest is built by :func:`ingest.run_manifest.build_run_manifest`
(``patient_id``, ``study_id`` and ``site`` replaced by keyed hashes).

Inputs
------
``labels``
    CSV (or DataFrame) with ``sample_id`` and ``label`` (class name or index),
    plus optional metadata columns (``patient_id``, ``study_id``, ``site``,
    ``scanner``, ``sex``, ``age``, ``view``, ``split``, ``label_<annotator>``).
    ``None`` for an **unlabeled** batch (predictions on new data, e.g. after
    deployment, to compare with a reference run by ``medaudit drift``): the rows
    are then those of ``pred_probs`` (a CSV) or of ``metadata`` (with a ``.npy``
    ``pred_probs``, whose rows follow it); every row gets ``label = -1``
    (``audit._schemas.UNLABELED``) and ``run.json['has_labels']`` is false, as for
    unlabeled ingestion.
``pred_probs``
    CSV (or DataFrame) with ``sample_id`` and one probability column per class,
    named by class name or index; or a ``.npy`` (N, K) array (or ndarray)
    whose rows follow the labels table.
``embeddings``
    Optional ``.npy`` (N, D) array (or ndarray), rows in labels order.
``metadata``
    Optional CSV (or DataFrame) joined on ``sample_id``.

``images``
    Optional ``.npy`` (or ndarray) ``(N, S, S)``, ``(N, C, S, S)`` or
    ``(N, S, S, C)`` (C = 1 or 3), uint8 or float in [0, 1], rows in labels
    order; enables the image checks (duplicates, outliers).

External predictions are assumed out-of-sample (the model never trained on
these images). ``oof/folds.npy`` is written as all ``-1``, which here means
"not from medaudit's K-fold: scored by an external model".

One builder, two callers
------------------------
:func:`prepare_predictions` validates everything and builds the run manifest
and the arrays in memory (nothing is written); :func:`write_predictions_run`
publishes them as one transaction. :func:`ingest_predictions` (the
``audit-predictions`` command) is the two in a row, and the notebook entry point
:func:`medaudit.audit_predictions` calls the same two, with
``invalid_rows="raise"``: a row that the file path would quarantine is an error
there, because in-memory arrays are aligned by position.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from audit.consistency import artifact_digests
from audit.rundir import MANIFEST, RunDir, stale_after
from audit.validation import check_pred_probs
from ingest.labels import integer_value, parse_class_index
from ingest.manifest import MSG_NO_PATIENT, read_csv_table, validate_label_table
from ingest.properties import compute_image_properties
from ingest.pseudonymize import key_fingerprint, load_or_create_secret
from ingest.run_manifest import build_run_manifest

__all__ = [
    "EXTERNAL_FOLD",
    "InvalidRows",
    "PreparedPredictions",
    "check_images",
    "ingest_predictions",
    "prepare_predictions",
    "write_predictions_run",
]

logger = logging.getLogger(__name__)

#: Fold index written for externally scored rows.
EXTERNAL_FOLD = -1

MISSING_COLUMN = "{what} has no {column!r} column (columns: {columns}); add it"
DUPLICATE_IDS = "{what} has duplicated sample_id values {ids} (first at row {row}); ids must be unique"
EMPTY_ID = "{what} has an empty sample_id at row {row}"
STRING_LABELS_NEED_NAMES = (
    "labels are class names ({examples}) but pred_probs has no column names; pass "
    "class_names (the column order of pred_probs), e.g. {suggest}"
)
NPY_ROWS = (
    "{what} has {got} rows but labels has {expected}; an array (or .npy file) must have one "
    "row per labels row, in the same order"
)
NO_OVERLAP = "no sample_id is in both labels ({n_labels} rows) and pred_probs ({n_preds} rows)"
EXISTING_RUN = (
    "output directory {out} already holds a run (manifest.parquet); choose a new output "
    "directory or pass overwrite=True"
)
CLASS_COLUMNS = (
    "pred_probs columns {columns} do not match the class names {names}; name the columns "
    "by class name or by class index 0..K-1"
)
NOT_A_NUMBER = (
    "pred_probs column {column!r} has {value!r} at row {row} (sample_id {sample_id!r}), which "
    "is not a number; probabilities must be numbers in [0, 1]"
)
RESERVED = "{what} column {column!r} would overwrite a column the run defines; rename it"
NO_PREDICTION = "no prediction for this sample_id in pred_probs"
NO_LABEL = "prediction for a sample_id that is not in labels"
INVALID_ROWS = (
    "{args}: {n} of {total} rows are not valid (rows numbered from 1); every row must be valid "
    "when the inputs are aligned by position:\n{reasons}"
)
IMAGES_SHAPE = (
    "images must have shape (N, S, S), (N, C, S, S) or (N, S, S, C) with C = 1 or 3 and square "
    "S x S images; got {shape}; resize or pad the images to a square"
)
IMAGES_DTYPE = (
    "images must be uint8 (0-255) or float in [0, 1]; got {what}; convert them, e.g. "
    "(images * 255).astype(numpy.uint8) for floats in [0, 1]"
)

#: What to do with a row the label validation refuses: ``"quarantine"`` it (file
#: inputs, joined on ``sample_id``) or ``"raise"`` a ``ValueError`` listing every
#: such row (in-memory inputs, aligned by position).
InvalidRows = Literal["quarantine", "raise"]

_ARGUMENT_OF_COLUMN = {"label": "labels", "sample_id": "sample_ids"}

#: Unlabeled predictions given as an array: nothing names the rows.
UNLABELED_ARRAY_ROWS = (
    "without labels, the rows of a pred_probs array (.npy) are named by metadata: give a "
    "metadata table (CSV) with sample_id (and patient_id, site ...) in the array's row order, "
    "or give pred_probs as a CSV with sample_id"
)
#: An unlabeled row table that has a label column after all.
UNLABELED_HAS_LABEL = (
    "{what} has a 'label' column but no labels were given; pass the table as labels to audit "
    "labeled predictions"
)


def _read_table(src: str | os.PathLike[str] | pd.DataFrame, what: str) -> pd.DataFrame:
    if isinstance(src, pd.DataFrame):
        df = src.copy()
        df.columns = [str(c).strip() for c in df.columns]
    else:
        df = read_csv_table(src, what=f"{what} file")
    if "sample_id" not in df.columns:
        raise ValueError(MISSING_COLUMN.format(what=what, column="sample_id",
                                               columns=list(df.columns)))
    ids = df["sample_id"]
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    if empty.any():
        raise ValueError(EMPTY_ID.format(what=what, row=int(np.flatnonzero(empty)[0])))
    df["sample_id"] = ids.astype(str).str.strip()
    dup = df["sample_id"].duplicated(keep=False)
    if dup.any():
        ids_dup = sorted(df.loc[dup, "sample_id"].unique())
        raise ValueError(DUPLICATE_IDS.format(what=what, ids=ids_dup[:5],
                                              row=int(np.flatnonzero(dup)[0])))
    return df.reset_index(drop=True)


def _read_array(src: str | os.PathLike[str] | np.ndarray, what: str) -> np.ndarray:
    if isinstance(src, np.ndarray):
        return src
    p = Path(src)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {p} does not exist")
    return np.load(p, allow_pickle=False)


def _is_array_source(src: Any) -> bool:
    return isinstance(src, np.ndarray) or (
        not isinstance(src, pd.DataFrame) and Path(src).suffix.lower() == ".npy"
    )


def _text_labels(raw: pd.Series) -> list[str]:
    """Label values that are not class indices (names)."""
    text = raw.dropna().astype(str).str.strip()
    return [v for v in text.unique().tolist() if integer_value(v) is None]


def _resolve_classes(
    prob_columns: list[str] | None, class_names: Sequence[str] | None,
    raw_labels: pd.Series, k: int,
) -> tuple[list[str], list[int]]:
    """Class names and, for each class, its column position in pred_probs."""
    if prob_columns is None:
        if class_names is not None:
            names = [str(n) for n in class_names]
            if len(names) != k:
                raise ValueError(f"class_names has {len(names)} names but pred_probs has {k} columns")
            return names, list(range(k))
        cols = [str(i) for i in range(k)]
    else:
        cols = [str(c).strip() for c in prob_columns]
    idx = [parse_class_index(c) for c in cols]
    as_index = all(i is not None for i in idx)
    if as_index and sorted(idx) != list(range(len(cols))):  # type: ignore[type-var]
        raise ValueError(CLASS_COLUMNS.format(columns=cols, names="0..K-1"))
    pos = {i: p for p, i in enumerate(idx)} if as_index else {}
    if class_names is not None:
        names = [str(n) for n in class_names]
        if len(names) != len(cols):
            raise ValueError(CLASS_COLUMNS.format(columns=cols, names=names))
        if set(cols) == set(names):
            return names, [cols.index(n) for n in names]
        if as_index:
            return names, [pos[i] for i in range(len(cols))]
        raise ValueError(CLASS_COLUMNS.format(columns=cols, names=names))
    if not as_index:
        return cols, list(range(len(cols)))
    examples = _text_labels(raw_labels)
    if examples:
        raise ValueError(STRING_LABELS_NEED_NAMES.format(
            examples=examples[:3], suggest=f"class_names={[f'name{i}' for i in range(len(cols))]}"))
    return [str(i) for i in range(len(cols))], [pos[i] for i in range(len(cols))]


def _numeric_probs(pr: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Probability columns as float; a value that is not a number names its cell."""
    out = np.empty((len(pr), len(columns)), dtype=np.float64)
    for j, c in enumerate(columns):
        num = pd.to_numeric(pr[c], errors="coerce")
        bad = num.isna() & pr[c].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(NOT_A_NUMBER.format(column=c, value=pr[c].iloc[i], row=i,
                                                 sample_id=pr["sample_id"].iloc[i]))
        out[:, j] = num.to_numpy(dtype=np.float64)
    return out


def _sha256(src: Any) -> str | None:
    if isinstance(src, (pd.DataFrame, np.ndarray)) or src is None:
        return None
    h = hashlib.sha256()
    with open(src, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _join_metadata(lab: pd.DataFrame, metadata: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    meta = _read_table(metadata, "metadata")
    clash = [c for c in meta.columns if c != "sample_id" and c in lab.columns]
    if clash:
        raise ValueError(f"metadata columns {clash} also appear in labels; keep one copy")
    unmatched = int((~meta["sample_id"].isin(lab["sample_id"])).sum())
    if unmatched:
        logger.warning("metadata: %d sample_id values are not in labels and were ignored",
                       unmatched)
    return lab.merge(meta, on="sample_id", how="left", validate="one_to_one")


def check_images(images: Any, *, n_samples: int | None = None) -> np.ndarray:
    """Check an image array and return it as the cache layout ``(N, C, S, S)``.

    Parameters
    ----------
    images : array-like
        ``(N, S, S)``, ``(N, C, S, S)`` or ``(N, S, S, C)`` with C = 1 or 3;
        uint8, integers in ``[0, 255]`` or floats in ``[0, 1]``.
    n_samples : int, optional
        Expected N.

    Returns
    -------
    numpy.ndarray
        ``(N, C, S, S)`` uint8 (integers) or float32 (floats).

    Raises
    ------
    TypeError
        For a dtype that is not numeric.
    ValueError
        For a wrong shape or row count, a non-finite value or a value out of range.
    """
    arr = np.asarray(images)
    if arr.dtype.kind not in "uif" or arr.dtype == np.bool_:
        raise TypeError(IMAGES_DTYPE.format(what=f"dtype {arr.dtype}"))
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[1] not in (1, 3) and arr.shape[-1] in (1, 3):
        arr = np.moveaxis(arr, -1, 1)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or arr.shape[2] != arr.shape[3] \
            or arr.shape[2] < 2:
        raise ValueError(IMAGES_SHAPE.format(shape=np.shape(images)))
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(NPY_ROWS.format(what="images", got=arr.shape[0], expected=n_samples))
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iu":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ValueError(IMAGES_DTYPE.format(what=f"integers in [{lo}, {hi}]"))
        return np.ascontiguousarray(arr, dtype=np.uint8)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"images has a non-finite value in row {int(np.argwhere(bad)[0][0])}; "
                         "fix or drop that image")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0 or hi > 1:
        raise ValueError(IMAGES_DTYPE.format(what=f"floats in [{lo:.4g}, {hi:.4g}]"))
    return np.ascontiguousarray(arr, dtype=np.float32)


@dataclass
class PreparedPredictions:
    """A validated run of external predictions, in memory (nothing written yet).

    Attributes
    ----------
    manifest : pandas.DataFrame
        The run manifest, N rows (pseudonymized, identifier columns dropped).
    class_names : list of str
        K names in label-index order.
    pred_probs : numpy.ndarray
        ``(N, K)`` float32, rows summing to one.
    folds : numpy.ndarray
        ``(N,)`` int16, all :data:`EXTERNAL_FOLD`.
    embeddings : numpy.ndarray or None
        ``(N, D)`` float32.
    images : numpy.ndarray or None
        ``(N, C, S, S)`` uint8 or float32.
    image_properties : pandas.DataFrame or None
        N rows (:func:`ingest.properties.compute_image_properties`) when images are given.
    quarantine : pandas.DataFrame
        ``source``, ``reason`` of every refused row.
    warnings : list of str
        Messages for the user (dropped identifier columns, no patient ids ...).
    run_json : dict
        The ``classes``, ``source`` and ``external`` sections of ``run.json``.
    """

    manifest: pd.DataFrame
    class_names: list[str]
    pred_probs: np.ndarray
    folds: np.ndarray
    embeddings: np.ndarray | None = None
    images: np.ndarray | None = None
    image_properties: pd.DataFrame | None = None
    quarantine: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["source", "reason"]))
    warnings: list[str] = field(default_factory=list)
    run_json: dict[str, Any] = field(default_factory=dict)

    def evidence(self) -> dict[str, Any]:
        """The arrays by evidence name (:data:`audit.context.EVIDENCE`), those present."""
        ev: dict[str, Any] = {"pred_probs": self.pred_probs, "folds": self.folds}
        if self.embeddings is not None:
            ev["embeddings"] = self.embeddings
        if self.images is not None:
            ev["images"] = self.images
        if self.image_properties is not None:
            ev["image_properties"] = self.image_properties
        return ev


def _invalid_rows_error(refused: pd.DataFrame, total: int) -> ValueError:
    """One error listing every refused row, naming the arguments they came from."""
    import re

    columns = {c for r in refused["reason"] for c in re.findall(r"column '([^']+)'", str(r))}
    args = sorted({_ARGUMENT_OF_COLUMN.get(c, "metadata") for c in columns}) or ["labels"]
    lines = [f"  - {r}" for r in refused["reason"].head(20)]
    if len(refused) > 20:
        lines.append(f"  ... and {len(refused) - 20} more")
    return ValueError(INVALID_ROWS.format(args=", ".join(args), n=len(refused), total=total,
                                          reasons="\n".join(lines)))


def _unlabeled_rows(
    pred_probs: str | os.PathLike[str] | pd.DataFrame | np.ndarray,
    metadata: str | os.PathLike[str] | pd.DataFrame | None,
) -> tuple[pd.DataFrame, str | os.PathLike[str] | pd.DataFrame | None, str]:
    """Row table of an unlabeled batch, the metadata still to join, and the table's name."""
    if _is_array_source(pred_probs):
        if metadata is None:
            raise ValueError(UNLABELED_ARRAY_ROWS)
        rows, what, metadata = _read_table(metadata, "metadata"), "metadata", None
    else:
        rows, what = _read_table(pred_probs, "pred_probs")[["sample_id"]], "pred_probs"
    if "label" in rows.columns:
        raise ValueError(UNLABELED_HAS_LABEL.format(what=what))
    return rows, metadata, what


def prepare_predictions(
    labels: str | os.PathLike[str] | pd.DataFrame | None,
    pred_probs: str | os.PathLike[str] | pd.DataFrame | np.ndarray,
    *,
    embeddings: str | os.PathLike[str] | np.ndarray | None = None,
    metadata: str | os.PathLike[str] | pd.DataFrame | None = None,
    images: str | os.PathLike[str] | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    secret_file: str | os.PathLike[str] | None = None,
    invalid_rows: InvalidRows = "quarantine",
) -> PreparedPredictions:
    """Validate external predictions and build the run manifest and arrays (no writes).

    The one validation of external predictions, shared by the file path
    (:func:`ingest_predictions`) and the in-memory path
    (:func:`medaudit.audit_predictions`).

    Parameters
    ----------
    labels, pred_probs, embeddings, metadata, class_names, secret_file
        See :func:`ingest_predictions`.
    images : path or ndarray, optional
        See :func:`check_images`; rows in labels order.
    invalid_rows : {'quarantine', 'raise'}
        A row refused by the label validation (a label that is not a class, a
        bad ``sex`` or ``age``) or without a prediction is quarantined, or
        raises one ``ValueError`` listing every such row.

    Returns
    -------
    PreparedPredictions

    Raises
    ------
    FileNotFoundError, TypeError, ValueError
        See :func:`ingest_predictions` and :func:`check_images`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> labels = pd.DataFrame({"sample_id": ["a", "b", "c", "d"],
    ...                        "label": ["benign", "malignant", "benign", "oops"],
    ...                        "patient_id": ["P1", "P1", "P2", "P3"]})
    >>> probs = pd.DataFrame({"sample_id": ["a", "b", "c", "d"], "benign": [0.9, 0.2, 0.7, 0.5],
    ...                       "malignant": [0.1, 0.8, 0.3, 0.5]})
    >>> prepared = prepare_predictions(labels, probs)
    >>> prepared.manifest[["sample_id", "label", "label_name"]]
      sample_id  label label_name
    0         a      0     benign
    1         b      1  malignant
    2         c      0     benign
    >>> prepared.quarantine["source"].tolist()
    ['labels:d']
    >>> bool(prepared.manifest["patient_key"].str.startswith("p-").all())  # pseudonymized
    True
    """
    unlabeled = labels is None
    if unlabeled:
        lab, metadata, rows_from = _unlabeled_rows(pred_probs, metadata)
        raw_labels = pd.Series([], dtype=object)
    else:
        lab, rows_from = _read_table(labels, "labels"), "labels"
        if "label" not in lab.columns:
            raise ValueError(MISSING_COLUMN.format(what="labels", column="label",
                                                   columns=list(lab.columns)))
        raw_labels = lab["label"]
    n_labels = len(lab)
    quarantine: list[dict[str, str]] = []

    # -- class names and the probability matrix, in labels row order (NaN rows: no prediction)
    if _is_array_source(pred_probs):
        arr = np.asarray(_read_array(pred_probs, "pred_probs"))
        if arr.ndim != 2:
            raise ValueError(f"pred_probs must have shape (N, K); got {arr.shape}")
        if arr.shape[0] != n_labels:
            raise ValueError(NPY_ROWS.format(what="pred_probs", got=arr.shape[0],
                                             expected=n_labels))
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"pred_probs must be numeric probabilities; got dtype {arr.dtype}")
        names, order = _resolve_classes(None, class_names, raw_labels, arr.shape[1])
        probs_by_row = np.asarray(arr, dtype=np.float64)[:, order]
    else:
        pr = _read_table(pred_probs, "pred_probs")
        prob_cols = [c for c in pr.columns if c != "sample_id"]
        if len(prob_cols) < 2:
            raise ValueError(
                f"pred_probs must have one probability column per class (at least 2) besides "
                f"sample_id; got columns {list(pr.columns)}"
            )
        names, order = _resolve_classes(prob_cols, class_names, raw_labels, len(prob_cols))
        values = _numeric_probs(pr, prob_cols)[:, order]
        if not lab["sample_id"].isin(pr["sample_id"]).any():
            raise ValueError(NO_OVERLAP.format(n_labels=n_labels, n_preds=len(pr)))
        for sid in pr.loc[~pr["sample_id"].isin(lab["sample_id"]), "sample_id"]:
            quarantine.append({"source": f"pred_probs:{sid}", "reason": NO_LABEL})
        pos = pd.Series(np.arange(len(pr)), index=pr["sample_id"])
        where = lab["sample_id"].map(pos)
        probs_by_row = np.full((n_labels, len(names)), np.nan)
        has = where.notna().to_numpy()
        probs_by_row[has] = values[where[has].astype(int).to_numpy()]

    emb_by_row = None
    if embeddings is not None:
        emb_by_row = np.asarray(_read_array(embeddings, "embeddings"))
        if emb_by_row.ndim != 2:
            raise ValueError(f"embeddings must have shape (N, D); got {emb_by_row.shape}")
        if emb_by_row.shape[0] != n_labels:
            raise ValueError(NPY_ROWS.format(what="embeddings", got=emb_by_row.shape[0],
                                             expected=n_labels))
        if emb_by_row.dtype.kind not in "fiu":
            raise TypeError(f"embeddings must be numeric; got dtype {emb_by_row.dtype}")
    img_by_row = None
    if images is not None:
        img_by_row = check_images(_read_array(images, "images"), n_samples=n_labels)

    # -- labels and metadata: the manifest's validation and identifier filter ---------------
    table_in = _join_metadata(lab, metadata) if metadata is not None else lab
    for col in ("label_name", "patient_key", "study_key"):
        if col in table_in.columns:
            raise ValueError(RESERVED.format(what="labels/metadata", column=col))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = rows_from if metadata is None else f"{rows_from}/metadata"
        table = validate_label_table(table_in, source=source, key_col="sample_id", classes=names,
                                     require_labels=not unlabeled)
    if invalid_rows == "raise" and len(table.refused):
        raise _invalid_rows_error(table.refused, n_labels)
    quarantine += [{"source": f"{rows_from}:{r.source}", "reason": r.reason}
                   for r in table.refused.itertuples()]
    rows = table.rows
    pos_in_labels = rows["_row"].to_numpy() - 1
    if invalid_rows == "quarantine":  # in memory a NaN row is an error of check_pred_probs
        no_pred = np.isnan(probs_by_row[pos_in_labels]).all(axis=1)
        for sid in rows.loc[no_pred, "sample_id"]:
            quarantine.append({"source": f"{rows_from}:{sid}", "reason": NO_PREDICTION})
        rows, pos_in_labels = rows[~no_pred].reset_index(drop=True), pos_in_labels[~no_pred]
    if not len(rows):
        raise ValueError(f"no row of {rows_from} has a valid prediction ({len(quarantine)} rows "
                         "were refused: see their reasons in quarantine.csv)")
    if not unlabeled and rows["label"].nunique() < 2:
        raise ValueError(
            f"only one class among the {len(rows)} rows with a label and a prediction; an audit "
            f"needs two ({len(quarantine)} rows were refused: see their reasons in quarantine.csv)"
        )
    probs = check_pred_probs(probs_by_row[pos_in_labels], n_samples=len(rows),
                             n_classes=len(names), row_names=rows["sample_id"].to_numpy())
    probs = probs / probs.sum(axis=1, keepdims=True)
    emb = None
    if emb_by_row is not None:
        emb = emb_by_row[pos_in_labels].astype(np.float32)
        bad = ~np.isfinite(emb)
        if bad.any():
            r = int(np.argwhere(bad)[0][0])
            raise ValueError(f"embeddings has a non-finite value at row {int(pos_in_labels[r])} "
                             f"(sample_id {rows['sample_id'].iloc[r]!r})")
    notes = list(table.warnings)
    if "patient_id" not in rows.columns or rows["patient_id"].isna().all():
        notes.append(MSG_NO_PATIENT)

    key = load_or_create_secret(secret_file)
    manifest = build_run_manifest(rows, key=key)
    img = None if img_by_row is None else img_by_row[pos_in_labels]
    props = None if img is None else compute_image_properties(img, manifest["sample_id"].tolist())
    inputs = {
        name: {"path": str(src), "sha256": _sha256(src)}
        for name, src in (("labels", labels), ("pred_probs", pred_probs),
                          ("embeddings", embeddings), ("metadata", metadata), ("images", images))
        if src is not None and not isinstance(src, (pd.DataFrame, np.ndarray))
    }
    run_json = {
        "classes": names,
        "source": "external",
        "has_labels": not unlabeled,
        "external": {
            "n_samples": len(manifest),
            "n_quarantined": len(quarantine),
            "warnings": notes,
            "folds_note": "-1 = not out-of-fold from medaudit's K-fold; scored by an "
            "external model assumed never to have trained on these samples",
            "inputs": inputs,
            "input_files": {"algorithm": "SHA-256",
                            "files": {Path(v["path"]).name: v["sha256"] for v in inputs.values()}},
            "key_fingerprint": key_fingerprint(key),
        },
    }
    return PreparedPredictions(
        manifest=manifest, class_names=names, pred_probs=probs.astype(np.float32),
        folds=np.full(len(manifest), EXTERNAL_FOLD, dtype=np.int16), embeddings=emb, images=img,
        image_properties=props,
        quarantine=pd.DataFrame(quarantine, columns=["source", "reason"]), warnings=notes,
        run_json=run_json,
    )


def write_predictions_run(
    prepared: PreparedPredictions,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    run_json: Mapping[str, Any] | None = None,
    stage: str = "medaudit audit-predictions",
) -> RunDir:
    """Publish a :class:`PreparedPredictions` as a run directory, in one transaction.

    The old run (with ``overwrite=True``) stays complete until the new one is;
    every output of ingestion and of the later stages is replaced.

    Parameters
    ----------
    prepared : PreparedPredictions
        From :func:`prepare_predictions`.
    out : path
        Run directory to create.
    overwrite : bool
        Replace a run already in ``out``.
    run_json : mapping, optional
        Further top-level ``run.json`` sections (e.g. ``deployment``).
    stage : str
        Shown to a second writer while the lock is held.

    Returns
    -------
    RunDir

    Raises
    ------
    ValueError
        When ``out`` already holds a run and ``overwrite`` is False.
    audit.transaction.RunDirBusyError
        When another process is writing ``out``.
    """
    run = RunDir(out)
    with run.transaction(stage) as staged:
        if run.has(MANIFEST) and not overwrite:
            raise ValueError(EXISTING_RUN.format(out=run.path))
        stale_paths, _ = stale_after("ingest")
        staged.remove(stale_paths)
        staged.write_manifest(prepared.manifest)
        staged.write_array("oof/pred_probs", prepared.pred_probs)
        staged.write_array("oof/folds", prepared.folds)
        if prepared.embeddings is not None:
            staged.write_array("oof/embeddings", prepared.embeddings)
        if prepared.images is not None:
            staged.write_array("images", prepared.images)
        if prepared.image_properties is not None:
            staged.write_image_properties(prepared.image_properties)
        staged.write_quarantine(prepared.quarantine)
        record = {**prepared.run_json, **dict(run_json or {})}
        consumed = [f"oof/{n}.npy" for n in ("pred_probs", "folds", "embeddings")]
        if "external" in record:  # digests let `audit` refuse predictions edited afterwards
            record["external"] = {**record["external"],
                                  "artifacts": artifact_digests(staged, consumed)}
        staged.update_run_json(record, replace=True)
    return run


def ingest_predictions(
    labels: str | os.PathLike[str] | pd.DataFrame | None,
    pred_probs: str | os.PathLike[str] | pd.DataFrame | np.ndarray,
    *,
    out: str | os.PathLike[str],
    embeddings: str | os.PathLike[str] | np.ndarray | None = None,
    metadata: str | os.PathLike[str] | pd.DataFrame | None = None,
    images: str | os.PathLike[str] | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    secret_file: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> RunDir:
    """Write a run directory from externally computed predictions.

    Parameters
    ----------
    labels : path or DataFrame or None
        ``sample_id``, ``label`` (+ metadata columns); None for an unlabeled batch
        (rows from ``pred_probs``, or from ``metadata`` when ``pred_probs`` is an
        array; see the module docstring).
    pred_probs : path or DataFrame or ndarray
        CSV/DataFrame with ``sample_id`` + one column per class (class names or
        indices ``0..K-1``), or ``.npy``/ndarray ``(N, K)`` in labels row order.
    out : path
        Run directory to create.
    embeddings : path or ndarray, optional
        ``(N, D)`` in labels row order.
    metadata : path or DataFrame, optional
        Joined on ``sample_id`` (left join onto the labels).
    images : path or ndarray, optional
        ``(N, S, S)``, ``(N, C, S, S)`` or ``(N, S, S, C)`` in labels row order
        (see :func:`check_images`); written as ``images.npy`` with
        ``image_properties.parquet``.
    class_names : sequence of str, optional
        Class names in index order; needed when labels are names and
        ``pred_probs`` has no column names.
    secret_file : path, optional
        Pseudonymisation key file (default: ``MEDAUDIT_SECRET`` or
        ``~/.config/medaudit/secret.key``).
    overwrite : bool
        Replace a run already in ``out``.

    Returns
    -------
    RunDir
        With ``manifest.parquet``, ``oof/pred_probs.npy`` (float32),
        ``oof/folds.npy`` (all ``-1``), optional ``oof/embeddings.npy``,
        ``quarantine.csv`` (rows refused: a bad label, sex or age, no join
        partner) and ``run.json`` (``classes``, ``source: "external"``).

    Raises
    ------
    FileNotFoundError
        When an input file does not exist.
    ValueError
        One clear message for: a missing column, duplicated or empty
        ``sample_id``, a probability that is not a number, NaN, outside [0, 1]
        or in a row not summing to one, arrays whose shapes disagree with the
        labels, no overlap between labels and predictions, fewer than two
        classes among the accepted rows (labeled runs), an existing run in
        ``out``, an unlabeled ``.npy`` without a ``metadata`` table naming its rows.
    """
    run = RunDir(out)
    if run.has(MANIFEST) and not overwrite:  # checked again under the lock when publishing
        raise ValueError(EXISTING_RUN.format(out=run.path))
    prepared = prepare_predictions(
        labels, pred_probs, embeddings=embeddings, metadata=metadata, images=images,
        class_names=class_names, secret_file=secret_file,
    )
    run = write_predictions_run(prepared, out, overwrite=overwrite)
    for w in prepared.warnings:
        warnings.warn(w, stacklevel=2)
    if len(prepared.quarantine):
        logger.warning("%d rows were refused (see %s)", len(prepared.quarantine),
                       run.file("quarantine.csv"))
    return run
