"""Build a run directory from the predictions of a model trained elsewhere.

A reviewer who receives a model's predictions (not the model) can audit them:
:func:`ingest_predictions` joins a labels table and a prediction table on
``sample_id``, validates them once, and writes a run directory that every
check accepts. No image is needed; checks that need images or image
properties are skipped with their reason.

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

``patient_id`` and ``study_id`` are replaced by keyed hashes
(:mod:`ingest.pseudonymize`) before anything is written; without
``patient_id`` each sample is its own patient.

External predictions are assumed out-of-sample (the model never trained on
these images). ``oof/folds.npy`` is written as all ``-1``, which here means
"not from medaudit's K-fold: scored by an external model".
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.rundir import MANIFEST, RunDir
from audit.validation import check_pred_probs
from ingest.pseudonymize import key_fingerprint, load_or_create_secret, pseudonymize

__all__ = ["EXTERNAL_FOLD", "ingest_predictions"]

logger = logging.getLogger(__name__)

#: Fold index written for externally scored rows.
EXTERNAL_FOLD = -1

MISSING_COLUMN = "{what} has no {column!r} column (columns: {columns}); add it"
DUPLICATE_IDS = "{what} has duplicated sample_id values {ids} (first at row {row}); ids must be unique"
EMPTY_ID = "{what} has an empty sample_id at row {row}"
BAD_LABEL = (
    "labels column 'label' has {value!r} at row {row} (sample_id {sample_id!r}); expected a "
    "class name in {names} or a class index in [0, {k})"
)
MISSING_LABEL = "labels column 'label' is empty at row {row} (sample_id {sample_id!r})"
STRING_LABELS_NEED_NAMES = (
    "labels are class names ({examples}) but pred_probs has no column names; pass "
    "class_names (the column order of pred_probs), e.g. --classes {suggest}"
)
NPY_ROWS = (
    "{what} has {got} rows but labels has {expected}; a .npy array must have one row per "
    "labels row, in the same order"
)
NO_OVERLAP = "no sample_id is in both labels ({n_labels} rows) and pred_probs ({n_preds} rows)"
EXISTING_RUN = (
    "output directory {out} already holds a run (manifest.parquet); choose a new --out or "
    "pass overwrite=True (--overwrite)"
)
CLASS_COLUMNS = (
    "pred_probs columns {columns} do not match the class names {names}; name the columns "
    "by class name or by class index 0..K-1"
)
RESERVED = "metadata column {column!r} would overwrite a column the run defines; rename it"

_PHI_COLUMNS = {"patient_id": ("patient", "patient_key"), "study_id": ("study", "study_key")}


def _read_table(src: str | os.PathLike[str] | pd.DataFrame, what: str) -> pd.DataFrame:
    if isinstance(src, pd.DataFrame):
        df = src.copy()
    else:
        p = Path(src)
        if not p.exists():
            raise FileNotFoundError(f"{what} file {p} does not exist")
        df = pd.read_csv(p, dtype={"sample_id": str})
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


def _is_index(s: str) -> bool:
    return s.strip().lstrip("+").isdigit()


def _resolve_classes(
    prob_columns: list[str] | None, class_names: Sequence[str] | None,
    raw_labels: pd.Series, k: int,
) -> tuple[list[str], list[int]]:
    """Class names and, for each class, its column position in pred_probs."""
    if prob_columns is not None:
        cols = [str(c).strip() for c in prob_columns]
        as_index = all(_is_index(c) for c in cols)
        if as_index and sorted(int(c) for c in cols) != list(range(len(cols))):
            raise ValueError(CLASS_COLUMNS.format(columns=cols, names="0..K-1"))
        if class_names is not None:
            names = [str(n) for n in class_names]
            if len(names) != len(cols):
                raise ValueError(CLASS_COLUMNS.format(columns=cols, names=names))
            if set(cols) == set(names):
                return names, [cols.index(n) for n in names]
            if as_index:
                pos = {int(c): i for i, c in enumerate(cols)}
                return names, [pos[i] for i in range(len(cols))]
            raise ValueError(CLASS_COLUMNS.format(columns=cols, names=names))
        if as_index:
            labels_text = raw_labels.dropna().astype(str).str.strip()
            if len(labels_text) and not labels_text.map(_is_index).all():
                examples = labels_text[~labels_text.map(_is_index)].unique()[:3].tolist()
                raise ValueError(STRING_LABELS_NEED_NAMES.format(
                    examples=examples, suggest=",".join(f"name{i}" for i in range(len(cols)))))
            pos = {int(c): i for i, c in enumerate(cols)}
            return [str(i) for i in range(len(cols))], [pos[i] for i in range(len(cols))]
        return cols, list(range(len(cols)))
    if class_names is not None:
        names = [str(n) for n in class_names]
        if len(names) != k:
            raise ValueError(f"class_names has {len(names)} names but pred_probs has {k} columns")
        return names, list(range(k))
    labels_text = raw_labels.dropna().astype(str).str.strip()
    if len(labels_text) and not labels_text.map(_is_index).all():
        examples = labels_text[~labels_text.map(_is_index)].unique()[:3].tolist()
        raise ValueError(STRING_LABELS_NEED_NAMES.format(
            examples=examples, suggest=",".join(f"name{i}" for i in range(k))))
    return [str(i) for i in range(k)], list(range(k))


def _label_indices(raw: pd.Series, ids: pd.Series, names: list[str]) -> np.ndarray:
    k = len(names)
    by_name = {n: i for i, n in enumerate(names)}
    out = np.empty(len(raw), dtype=np.int64)
    for row, (v, sid) in enumerate(zip(raw.tolist(), ids.tolist())):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise ValueError(MISSING_LABEL.format(row=row, sample_id=sid))
        s = str(v).strip()
        if s in by_name:
            out[row] = by_name[s]
            continue
        try:
            f = float(s)
        except ValueError:
            f = float("nan")
        if np.isfinite(f) and f == int(f) and 0 <= f < k:
            out[row] = int(f)
            continue
        raise ValueError(BAD_LABEL.format(value=v, row=row, sample_id=sid, names=names, k=k))
    return out


def _sha256(src: Any) -> str | None:
    if isinstance(src, (pd.DataFrame, np.ndarray)) or src is None:
        return None
    h = hashlib.sha256()
    with open(src, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _remove_run_artifacts(run: RunDir) -> None:
    """Delete the contract artifacts of a previous run in ``run`` (for ``overwrite``)."""
    names = ["manifest.parquet", "quarantine.csv", "images.npy", "image_properties.parquet",
             "run.json", "findings.json", "train/history.json"]
    paths = [run.path / n for n in names]
    paths += sorted((run.path / "oof").glob("*.npy")) + sorted((run.path / "oof/masked").glob("*.npy"))
    for p in paths:
        p.unlink(missing_ok=True)


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
        ``quarantine.csv`` (rows without a join partner) and ``run.json``
        (``classes``, ``source: "external"``).

    Raises
    ------
    FileNotFoundError
        When an input file does not exist.
    ValueError
        One clear message for: a missing column, duplicated or empty
        ``sample_id``, a label that is neither a class name nor an index in
        range, a probability that is NaN, outside [0, 1] or in a row not
        summing to one, arrays whose shapes disagree with the labels, no
        overlap between labels and predictions, an existing run in ``out``.
    """
    run = RunDir(out)
    if run.has(MANIFEST) and not overwrite:
        raise ValueError(EXISTING_RUN.format(out=run.path))
    lab = _read_table(labels, "labels")
    if "label" not in lab.columns:
        raise ValueError(MISSING_COLUMN.format(what="labels", column="label",
                                               columns=list(lab.columns)))
    quarantine: list[dict[str, str]] = []

    # -- predictions, joined on sample_id --------------------------------------------------
    if _is_array_source(pred_probs):
        probs = np.asarray(_read_array(pred_probs, "pred_probs"))
        if probs.ndim != 2:
            raise ValueError(f"pred_probs must have shape (N, K); got {probs.shape}")
        if probs.shape[0] != len(lab):
            raise ValueError(NPY_ROWS.format(what="pred_probs", got=probs.shape[0],
                                             expected=len(lab)))
        names, order = _resolve_classes(None, class_names, lab["label"], probs.shape[1])
        keep = np.arange(len(lab))
    else:
        pr = _read_table(pred_probs, "pred_probs")
        prob_cols = [c for c in pr.columns if c != "sample_id"]
        if len(prob_cols) < 2:
            raise ValueError(
                f"pred_probs must have one probability column per class (at least 2) besides "
                f"sample_id; got columns {list(pr.columns)}"
            )
        names, order = _resolve_classes(prob_cols, class_names, lab["label"], len(prob_cols))
        in_preds = lab["sample_id"].isin(pr["sample_id"])
        extra = pr.loc[~pr["sample_id"].isin(lab["sample_id"]), "sample_id"]
        for sid in lab.loc[~in_preds, "sample_id"]:
            quarantine.append({"source": f"labels:{sid}", "reason": "no prediction for this "
                               "sample_id in pred_probs"})
        for sid in extra:
            quarantine.append({"source": f"pred_probs:{sid}", "reason": "prediction for a "
                               "sample_id that is not in labels"})
        if not in_preds.any():
            raise ValueError(NO_OVERLAP.format(n_labels=len(lab), n_preds=len(pr)))
        keep = np.flatnonzero(in_preds.to_numpy())
        pr_idx = pr.set_index("sample_id").loc[lab["sample_id"].iloc[keep]]
        probs = pr_idx[prob_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    probs = probs[:, order]
    lab = lab.iloc[keep].reset_index(drop=True)
    k = len(names)
    probs = check_pred_probs(probs, n_samples=len(lab), n_classes=k,
                             row_names=lab["sample_id"].to_numpy())
    probs = probs / probs.sum(axis=1, keepdims=True)
    y = _label_indices(lab["label"], lab["sample_id"], names)

    # -- embeddings ---------------------------------------------------------------------------
    emb = None
    if embeddings is not None:
        emb_all = np.asarray(_read_array(embeddings, "embeddings"))
        n_lab_total = len(keep) + sum(q["source"].startswith("labels:") for q in quarantine)
        if emb_all.ndim != 2:
            raise ValueError(f"embeddings must have shape (N, D); got {emb_all.shape}")
        if emb_all.shape[0] != n_lab_total:
            raise ValueError(NPY_ROWS.format(what="embeddings", got=emb_all.shape[0],
                                             expected=n_lab_total))
        if emb_all.dtype.kind not in "fiu":
            raise ValueError(f"embeddings must be numeric; got dtype {emb_all.dtype}")
        emb = emb_all[keep].astype(np.float32)
        bad = ~np.isfinite(emb)
        if bad.any():
            r = int(np.argwhere(bad)[0][0])
            raise ValueError(f"embeddings has a non-finite value at row {r} "
                             f"(sample_id {lab['sample_id'].iloc[r]!r})")

    # -- manifest ------------------------------------------------------------------------------
    manifest = lab.drop(columns=["label"])
    if metadata is not None:
        meta = _read_table(metadata, "metadata")
        clash = [c for c in meta.columns if c != "sample_id" and c in manifest.columns]
        if clash:
            raise ValueError(f"metadata columns {clash} also appear in labels; keep one copy")
        unmatched = int((~meta["sample_id"].isin(manifest["sample_id"])).sum())
        if unmatched:
            logger.warning("metadata: %d sample_id values are not in labels and were ignored",
                           unmatched)
        manifest = manifest.merge(meta, on="sample_id", how="left", validate="one_to_one")
    for col in ("label_name", "patient_key", "study_key"):
        if col in manifest.columns:
            raise ValueError(RESERVED.format(column=col))
    key = load_or_create_secret(secret_file)
    if "patient_id" in manifest.columns:
        pid = manifest["patient_id"]
        manifest["patient_key"] = [
            pseudonymize(p, key=key, kind="patient") if pd.notna(p) and str(p).strip()
            else pseudonymize(s, key=key, kind="sample")
            for p, s in zip(pid, manifest["sample_id"])
        ]
    else:
        manifest["patient_key"] = [pseudonymize(s, key=key, kind="sample")
                                   for s in manifest["sample_id"]]
    if "study_id" in manifest.columns:
        manifest["study_key"] = [
            pseudonymize(v, key=key, kind="study") if pd.notna(v) and str(v).strip() else None
            for v in manifest["study_id"]
        ]
    manifest = manifest.drop(columns=[c for c in _PHI_COLUMNS if c in manifest.columns])
    manifest.insert(1, "label", y)
    manifest.insert(2, "label_name", [names[i] for i in y])
    for col in ("site", "scanner", "sex", "view", "split"):
        if col in manifest.columns:
            manifest[col] = manifest[col].astype("string").astype(object).where(
                manifest[col].notna(), None)
    core = ["sample_id", "label", "label_name", "patient_key"]
    manifest = manifest[core + [c for c in manifest.columns if c not in core]]

    # -- write ----------------------------------------------------------------------------------
    run.path.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _remove_run_artifacts(run)
    run.write_manifest(manifest)
    run.write_array("oof/pred_probs", probs.astype(np.float32))
    run.write_array("oof/folds", np.full(len(manifest), EXTERNAL_FOLD, dtype=np.int16))
    if emb is not None:
        run.write_array("oof/embeddings", emb)
    run.write_quarantine(pd.DataFrame(quarantine, columns=["source", "reason"]))
    run.update_run_json(
        {
            "classes": names,
            "source": "external",
            "external": {
                "n_samples": len(manifest),
                "n_quarantined": len(quarantine),
                "folds_note": "-1 = not out-of-fold from medaudit's K-fold; scored by an "
                "external model assumed never to have trained on these samples",
                "inputs": {
                    name: {"path": str(src), "sha256": _sha256(src)}
                    for name, src in (("labels", labels), ("pred_probs", pred_probs),
                                      ("embeddings", embeddings), ("metadata", metadata))
                    if src is not None and not isinstance(src, (pd.DataFrame, np.ndarray))
                },
                "key_fingerprint": key_fingerprint(key),
            },
        }
    )
    if quarantine:
        logger.warning("%d rows without a join partner were quarantined (see %s)",
                       len(quarantine), run.file("quarantine.csv"))
    return run
