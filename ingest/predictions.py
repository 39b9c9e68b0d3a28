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
``pred_probs``
    CSV (or DataFrame) with ``sample_id`` and one probability column per class,
    named by class name or index; or a ``.npy`` (N, K) array (or ndarray)
    whose rows follow the labels table.
``embeddings``
    Optional ``.npy`` (N, D) array (or ndarray), rows in labels order.
``metadata``
    Optional CSV (or DataFrame) joined on ``sample_id``.

External predictions are assumed out-of-sample (the model never trained on
these images). ``oof/folds.npy`` is written as all ``-1``, which here means
"not from medaudit's K-fold: scored by an external model".
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.rundir import MANIFEST, RunDir, stale_after
from audit.validation import check_pred_probs
from ingest.labels import parse_class_index
from ingest.manifest import read_csv_table, validate_label_table
from ingest.pseudonymize import key_fingerprint, load_or_create_secret
from ingest.run_manifest import build_run_manifest

__all__ = ["EXTERNAL_FOLD", "ingest_predictions"]

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
    "{what} has {got} rows but labels has {expected}; a .npy array must have one row per "
    "labels row, in the same order"
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
    return [v for v in text.unique().tolist() if parse_class_index(v) is None]


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


def ingest_predictions(
    labels: str | os.PathLike[str] | pd.DataFrame,
    pred_probs: str | os.PathLike[str] | pd.DataFrame | np.ndarray,
    *,
    out: str | os.PathLike[str],
    embeddings: str | os.PathLike[str] | np.ndarray | None = None,
    metadata: str | os.PathLike[str] | pd.DataFrame | None = None,
    class_names: Sequence[str] | None = None,
    secret_file: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> RunDir:
    """Write a run directory from externally computed predictions.

    Parameters
    ----------
    labels : path or DataFrame
        ``sample_id``, ``label`` (+ metadata columns).
    pred_probs : path or DataFrame or ndarray
        CSV/DataFrame with ``sample_id`` + one column per class (class names or
        indices ``0..K-1``), or ``.npy``/ndarray ``(N, K)`` in labels row order.
    out : path
        Run directory to create.
    embeddings : path or ndarray, optional
        ``(N, D)`` in labels row order.
    metadata : path or DataFrame, optional
        Joined on ``sample_id`` (left join onto the labels).
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
        classes among the accepted rows, an existing run in ``out``.
    """
    run = RunDir(out)
    if run.has(MANIFEST) and not overwrite:  # checked again under the lock when publishing
        raise ValueError(EXISTING_RUN.format(out=run.path))
    lab = _read_table(labels, "labels")
    if "label" not in lab.columns:
        raise ValueError(MISSING_COLUMN.format(what="labels", column="label",
                                               columns=list(lab.columns)))
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
        names, order = _resolve_classes(None, class_names, lab["label"], arr.shape[1])
        probs_by_row = np.asarray(arr, dtype=np.float64)[:, order]
    else:
        pr = _read_table(pred_probs, "pred_probs")
        prob_cols = [c for c in pr.columns if c != "sample_id"]
        if len(prob_cols) < 2:
            raise ValueError(
                f"pred_probs must have one probability column per class (at least 2) besides "
                f"sample_id; got columns {list(pr.columns)}"
            )
        names, order = _resolve_classes(prob_cols, class_names, lab["label"], len(prob_cols))
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
            raise ValueError(f"embeddings must be numeric; got dtype {emb_by_row.dtype}")

    # -- labels and metadata: the manifest's validation and identifier filter ---------------
    table_in = _join_metadata(lab, metadata) if metadata is not None else lab
    for col in ("label_name", "patient_key", "study_key"):
        if col in table_in.columns:
            raise ValueError(RESERVED.format(what="labels/metadata", column=col))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = "labels" if metadata is None else "labels/metadata"
        table = validate_label_table(table_in, source=source, key_col="sample_id", classes=names)
    quarantine += [{"source": f"labels:{r.source}", "reason": r.reason}
                   for r in table.refused.itertuples()]
    rows = table.rows
    pos_in_labels = rows["_row"].to_numpy() - 1
    no_pred = np.isnan(probs_by_row[pos_in_labels]).all(axis=1)
    for sid in rows.loc[no_pred, "sample_id"]:
        quarantine.append({"source": f"labels:{sid}", "reason": NO_PREDICTION})
    rows, pos_in_labels = rows[~no_pred].reset_index(drop=True), pos_in_labels[~no_pred]
    if rows["label"].nunique() < 2:
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

    key = load_or_create_secret(secret_file)
    manifest = build_run_manifest(rows, key=key)

    inputs = {
        name: {"path": str(src), "sha256": _sha256(src)}
        for name, src in (("labels", labels), ("pred_probs", pred_probs),
                          ("embeddings", embeddings), ("metadata", metadata))
        if src is not None and not isinstance(src, (pd.DataFrame, np.ndarray))
    }
    # -- publish as one transaction (the old run stays complete until this one is) ------------
    with run.transaction("medaudit audit-predictions") as staged:
        if run.has(MANIFEST) and not overwrite:
            raise ValueError(EXISTING_RUN.format(out=run.path))
        stale_paths, _ = stale_after("ingest")
        staged.remove(stale_paths)
        staged.write_manifest(manifest)
        staged.write_array("oof/pred_probs", probs.astype(np.float32))
        staged.write_array("oof/folds", np.full(len(manifest), EXTERNAL_FOLD, dtype=np.int16))
        if emb is not None:
            staged.write_array("oof/embeddings", emb)
        staged.write_quarantine(pd.DataFrame(quarantine, columns=["source", "reason"]))
        staged.update_run_json(
            {
                "classes": names,
                "source": "external",
                "external": {
                    "n_samples": len(manifest),
                    "n_quarantined": len(quarantine),
                    "warnings": table.warnings,
                    "folds_note": "-1 = not out-of-fold from medaudit's K-fold; scored by an "
                    "external model assumed never to have trained on these samples",
                    "inputs": inputs,
                    "input_files": {"algorithm": "SHA-256",
                                    "files": {Path(v["path"]).name: v["sha256"]
                                              for v in inputs.values()}},
                    "key_fingerprint": key_fingerprint(key),
                },
            },
            replace=True,
        )
    for w in table.warnings:
        warnings.warn(w, stacklevel=2)
    if quarantine:
        logger.warning("%d rows were refused (see %s)", len(quarantine), run.file("quarantine.csv"))
    return run
