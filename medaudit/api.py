"""The notebook entry point: audit an external model's predictions held in memory.

:func:`audit_predictions` takes what a reviewer has in a notebook (numpy arrays,
pandas objects or lists, in the conventions of cleanlab and scikit-learn:
``labels`` of shape ``(N,)``, ``pred_probs`` of shape ``(N, K)``), validates
them once with the validation of ``medaudit audit-predictions``
(:func:`ingest.predictions.prepare_predictions`: the label parser, the identifier
filter, the pseudonymizer and the run-manifest builder), runs the audit checks
and returns an :class:`audit.engine.AuditResult`. With ``out=`` the same run is
also written as a run directory (through the transaction of
``audit-predictions``), so the command line, the reports and the dashboard can
open it.

This module only adapts in-memory containers to the shared builder: every value
check lives there, so a bad input gets the message the command line would give.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from audit.context import AuditContext
from audit.engine import AuditResult, audit_context, audit_run, validate_audit_config
from audit.registry import get_check, list_checks
from audit.rundir import MANIFEST, RunDir
from ingest.predictions import (
    DUPLICATE_IDS,
    EXISTING_RUN,
    NPY_ROWS,
    prepare_predictions,
    write_predictions_run,
)

__all__ = [
    "DEPLOYMENT_SETTING",
    "MSG_DEPLOYMENT_UNUSED",
    "audit_predictions",
    "deployment_value",
    "with_deployment",
]

#: The check setting that receives ``deployment_prevalence`` (the ``prevalence_shift``
#: check reads ``[prevalence_shift] deployment_prevalence``).
DEPLOYMENT_SETTING = "deployment_prevalence"

MSG_DEPLOYMENT_UNUSED = (
    "deployment_prevalence={value!r} was given but none of the checks run reads it (the "
    "prevalence_shift check does; it is not among checks=...); it is recorded in "
    "run.json['deployment'] when out= is given"
)
MSG_NOT_1D = (
    "{name} must be a 1-D sequence of length N (a list, numpy array or pandas Series); got "
    "{what}{fix}"
)
MSG_LENGTH = "{name} has {got} entries but labels has {n}; give one per labels row, in order"
MSG_NOT_TABLE = (
    "metadata must be a pandas DataFrame (or a dict of columns) with one row per labels row; "
    "got {what}"
)
MSG_TWICE = "{what} given twice: as {first} and as {second}; give it once"
MSG_PROBS_SAMPLE_ID = (
    "pred_probs has a 'sample_id' column, but here rows are aligned by position; drop the "
    "column and pass sample_ids=..., or write both tables to CSV for medaudit "
    "audit-predictions, which joins them on sample_id"
)
MSG_DEPLOYMENT = (
    "deployment_prevalence must be {expected}; got {value!r}"
)
MSG_DEPLOYMENT_CONFLICT = (
    "deployment_prevalence={value!r} disagrees with config['{check}']['deployment_prevalence']"
    "={other!r}; give it once"
)


# -- adapters: containers in, plain arrays out (the values are checked by the builder) ------


def _describe(obj: Any) -> str:
    shape = getattr(obj, "shape", None)
    return f"{type(obj).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def _as_1d(values: Any, name: str, n: int | None = None) -> np.ndarray:
    """A 1-D object array from a list, array, Series, Index or one-column DataFrame."""
    if isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            raise TypeError(MSG_NOT_1D.format(name=name, what=_describe(values),
                                              fix="; pass one column, e.g. df['label']"))
        values = values.iloc[:, 0]
    if values is None or isinstance(values, (str, bytes, Mapping)) or np.isscalar(values):
        raise TypeError(MSG_NOT_1D.format(name=name, what=_describe(values), fix=""))
    if isinstance(values, (pd.Series, pd.Index)):
        arr = values.to_numpy(dtype=object, na_value=None)
    else:
        try:
            arr = np.asarray(values)
        except (TypeError, ValueError) as err:  # ragged nested lists
            raise TypeError(MSG_NOT_1D.format(name=name, what=_describe(values),
                                              fix=f" ({err})")) from None
    if arr.ndim == 2 and name == "labels" and arr.shape[1] > 1:
        raise ValueError(MSG_NOT_1D.format(
            name=name, what=f"shape {arr.shape}",
            fix="; for one-hot labels pass labels.argmax(axis=1)"))
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(MSG_NOT_1D.format(name=name, what=f"shape {arr.shape}", fix=""))
    if n is not None and len(arr) != n:
        raise ValueError(MSG_LENGTH.format(name=name, got=len(arr), n=n))
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    return np.array([v.item() if isinstance(v, np.generic) else v for v in arr], dtype=object)


def _as_2d(values: Any, name: str) -> np.ndarray:
    """A 2-D numeric array from nested lists, an array or a DataFrame (values checked later)."""
    if isinstance(values, pd.Series):
        raise ValueError(f"{name} must have shape (N, K); got a 1-D pandas Series"
                         + ("; for a binary model's P(class 1) pass "
                            "numpy.column_stack([1 - p, p])" if name == "pred_probs" else ""))
    if values is None or isinstance(values, (str, bytes, Mapping)) or np.isscalar(values):
        raise TypeError(f"{name} must be a 2-D array-like of numbers; got {_describe(values)}")
    try:
        arr = np.asarray(values.to_numpy() if isinstance(values, pd.DataFrame) else values)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a 2-D array-like of numbers; got {_describe(values)} "
                        f"({err})") from None
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must hold numbers; got values of type "
                            f"{sorted({type(v).__name__ for v in arr.ravel()})}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got dtype {arr.dtype}")
    if arr.ndim == 1 and name == "pred_probs":
        raise ValueError(f"pred_probs must have shape (N, K); got {arr.shape}; for a binary "
                         "model's P(class 1) pass numpy.column_stack([1 - p, p])")
    return arr


def _metadata_frame(metadata: Any, n: int) -> pd.DataFrame:
    if isinstance(metadata, Mapping):
        try:
            metadata = pd.DataFrame(dict(metadata))
        except ValueError as err:
            raise ValueError(f"metadata columns must all have N = {n} entries ({err})") from None
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(MSG_NOT_TABLE.format(what=_describe(metadata)))
    if len(metadata) != n:
        raise ValueError(MSG_LENGTH.format(name="metadata", got=len(metadata), n=n))
    meta = metadata.reset_index(drop=True).copy()
    meta.columns = [str(c).strip() for c in meta.columns]
    return meta


def _sample_ids(sample_ids: Any, meta: pd.DataFrame | None, n: int) -> list[str]:
    if meta is not None and "sample_id" in meta.columns:
        if sample_ids is not None:
            raise ValueError(MSG_TWICE.format(what="sample ids", first="sample_ids",
                                              second="metadata['sample_id']"))
        sample_ids = meta.pop("sample_id")
    if sample_ids is None:
        return [str(i) for i in range(n)]
    ids = _as_1d(sample_ids, "sample_ids", n)
    empty = [i for i, v in enumerate(ids) if v is None or not str(v).strip()
             or (isinstance(v, float) and math.isnan(v))]
    if empty:
        raise ValueError(f"sample_ids is empty at row {empty[0]}; every row needs an id")
    out = [str(v).strip() for v in ids]
    dup = pd.Series(out).duplicated(keep=False).to_numpy()
    if dup.any():
        dupes = sorted({s for s, d in zip(out, dup, strict=True) if d})
        raise ValueError(DUPLICATE_IDS.format(what="sample_ids", ids=dupes[:5],
                                              row=int(np.flatnonzero(dup)[0])))
    return out


def deployment_value(value: Any, class_names: list[str]) -> float | tuple[float, ...]:
    """A prevalence for binary problems (of class 1), one per class otherwise.

    Raises
    ------
    ValueError
        When the value is not in (0, 1) or the K shares do not sum to 1.
    """
    k = len(class_names)
    if k == 2 and isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        p = float(value)
        if not 0 < p < 1:
            raise ValueError(MSG_DEPLOYMENT.format(
                expected=f"in (0, 1): the share of class {class_names[1]!r} where the model is "
                "used", value=value))
        return p
    expected = (f"a number in (0, 1) (the share of class {class_names[1]!r}) or "
                if k == 2 else "") + f"one prevalence per class ({k} numbers summing to 1)"
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - set(class_names))
        if unknown or len(value) != k:
            raise ValueError(MSG_DEPLOYMENT.format(expected=expected + f", keyed by {class_names}",
                                                   value=value))
        value = [value[c] for c in class_names]
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(MSG_DEPLOYMENT.format(expected=expected, value=value)) from None
    if arr.shape != (k,) or not np.isfinite(arr).all() or (arr < 0).any() \
            or abs(arr.sum() - 1) > 1e-6:
        raise ValueError(MSG_DEPLOYMENT.format(expected=expected, value=value))
    return float(arr[1]) if k == 2 else tuple(float(v) for v in arr)


def with_deployment(
    config: Mapping[str, Mapping[str, Any]] | None,
    value: float | tuple[float, ...],
    checks: Sequence[str] | None,
) -> dict[str, dict[str, Any]]:
    """``config`` with the deployment prevalence given to every check that has the setting.

    Raises
    ------
    ValueError
        When ``config`` already states a different value for such a check.
    """
    out = {k: dict(v) for k, v in (config or {}).items()}
    consumers = [name for name in list_checks()
                 if DEPLOYMENT_SETTING in {f.name for f in
                                           dataclasses.fields(get_check(name).config_cls)}
                 and (checks is None or name in checks)]
    if not consumers:
        warnings.warn(MSG_DEPLOYMENT_UNUSED.format(value=value), stacklevel=3)
    for name in consumers:
        section = out.setdefault(name, {})
        other = section.get(DEPLOYMENT_SETTING)
        if other is not None and not np.allclose(np.asarray(other, float), np.asarray(value)):
            raise ValueError(MSG_DEPLOYMENT_CONFLICT.format(value=value, check=name, other=other))
        section[DEPLOYMENT_SETTING] = value
    return out


# -- the entry point -----------------------------------------------------------------------------


def audit_predictions(
    labels: Any | None,
    pred_probs: Any,
    *,
    sample_ids: Any = None,
    metadata: pd.DataFrame | Mapping[str, Any] | None = None,
    embeddings: Any = None,
    images: Any = None,
    patient_ids: Any = None,
    class_names: Sequence[str] | None = None,
    checks: Sequence[str] | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    deployment_prevalence: float | Sequence[float] | Mapping[str, float] | None = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    secret_file: str | os.PathLike[str] | None = None,
    strict: bool = False,
) -> AuditResult:
    """Audit the predictions of a model trained elsewhere, from arrays in memory.

    Rows are aligned by position: row ``i`` of every argument is sample ``i``.
    The predictions are assumed out-of-sample (the model never trained on these
    samples), as cleanlab assumes of its ``pred_probs``.

    Parameters
    ----------
    labels : array-like, shape (N,), or None
        Given labels: class indices ``0..K-1`` (cleanlab's convention) or class
        names (then ``class_names`` gives their order). None for an unlabeled
        batch (``run.json['has_labels']`` false; checks that need labels are
        skipped; compare it with a reference run by ``medaudit drift``).
    pred_probs : array-like, shape (N, K)
        Predicted probabilities, rows summing to one (softmax outputs, not
        logits). A DataFrame's column names are class names (or indices),
        matched to ``class_names`` when both are given.
    sample_ids : array-like of str, shape (N,), optional
        Names of the rows in findings and tables (default ``'0'``, ``'1'``, ...;
        or ``metadata['sample_id']``).
    metadata : pandas.DataFrame or dict of columns, optional
        N rows of optional columns: ``site``, ``scanner``, ``sex`` (F/M/O),
        ``age``, ``view``, ``split``, ``study_id``, annotator labels
        ``label_<annotator>``, anything else. Columns that look like direct
        identifiers (names, dates, record numbers ...) are dropped with a
        warning; ``study_id`` and ``site`` are replaced by keyed hashes.
    embeddings : array-like, shape (N, D), optional
        The model's features (enable the embedding-space checks).
    images : array-like, optional
        ``(N, S, S)``, ``(N, C, S, S)`` or ``(N, S, S, C)``, uint8 or floats in
        ``[0, 1]`` (enable the duplicate and outlier checks).
    patient_ids : array-like, shape (N,), optional
        Patient of each row, pseudonymized with a keyed hash. Without it each
        row is its own patient (with a warning) and leakage between images of
        one patient cannot be seen.
    class_names : sequence of str, optional
        K names in index order (default ``'0'`` .. ``'K-1'``, or the columns of
        a ``pred_probs`` DataFrame).
    checks : sequence of str, optional
        Checks to run (default: every registered check that has its evidence;
        see :func:`audit.list_checks`).
    config : mapping, optional
        ``{check: {setting: value}}`` overrides of the checks' defaults.
    deployment_prevalence : float or sequence or mapping, optional
        Prevalence where the model is used: for two classes the share of class
        1, otherwise one value per class (a sequence in class order or a
        mapping by class name). Passed to every check with a
        ``deployment_prevalence`` setting (``prevalence_shift``) and recorded
        in ``run.json['deployment']`` with ``out=``; a warning says so when no
        registered check reads it.
    out : path, optional
        Also write a run directory here (as ``medaudit audit-predictions``
        does): ``manifest.parquet``, ``oof/``, ``images.npy``, ``findings.json``
        and ``run.json``, openable by ``medaudit audit``, the reports and the
        dashboard.
    overwrite : bool
        Replace a run already in ``out``.
    secret_file : path, optional
        Pseudonymisation key file (default: ``MEDAUDIT_SECRET`` or
        ``~/.config/medaudit/secret.key``).
    strict : bool
        Raise :class:`audit.engine.AuditIncompleteError` when a check fails,
        instead of recording it (with a warning) in the result.

    Returns
    -------
    AuditResult
        ``findings``, ``skipped`` and ``errors`` (never silent: a failed check
        also makes a warning finding), ``findings_frame()``, ``table(check)``,
        ``summary()`` and a traffic-light display in Jupyter.

    Raises
    ------
    TypeError
        For an argument of the wrong kind (a scalar, a string, text where
        numbers are expected), naming the argument.
    ValueError
        For bad values, naming the argument: wrong shapes, lengths that
        disagree with ``labels``, NaN, labels that are not classes,
        probabilities outside ``[0, 1]`` or rows not summing to one, duplicated
        sample ids, fewer than two classes, an unknown check or setting, an
        existing run in ``out`` without ``overwrite=True``.
    audit.engine.AuditIncompleteError
        With ``strict=True``, when a check fails.

    Warns
    -----
    UserWarning
        No ``patient_ids``; identifier columns dropped from ``metadata``; a
        ``deployment_prevalence`` no check reads; a check that failed.

    Examples
    --------
    >>> import numpy as np
    >>> import medaudit
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 2, 300)
    >>> p1 = np.clip(0.15 + 0.7 * labels + rng.normal(0, 0.1, 300), 0.01, 0.99)
    >>> labels[:15] = 1 - labels[:15]                    # 15 labels flipped on purpose
    >>> result = medaudit.audit_predictions(
    ...     labels, np.column_stack([1 - p1, p1]), class_names=["benign", "malignant"],
    ...     patient_ids=[f"P{i // 2}" for i in range(300)], checks=["label_issues"])
    >>> result.complete
    True
    >>> table = result.table("label_issues")             # every sample, not only the top 100
    >>> len(table), bool(table["is_label_issue"].iloc[:15].mean() > 0.7)   # most flips found
    (300, True)
    >>> result.findings_frame()["check"].unique().tolist()
    ['label_issues']
    """
    validate_audit_config(config, checks=checks)  # unknown checks or settings: before any work
    run = RunDir(out) if out is not None else None
    if run is not None and run.has(MANIFEST) and not overwrite:
        raise ValueError(EXISTING_RUN.format(out=run.path))

    y = _as_1d(labels, "labels") if labels is not None else None
    n = len(y) if y is not None else len(pred_probs)
    meta = _metadata_frame(metadata, n) if metadata is not None else None
    ids = _sample_ids(sample_ids, meta, n)
    table = pd.DataFrame({"sample_id": ids})
    if y is not None:
        table["label"] = y
    if patient_ids is not None:
        if meta is not None and "patient_id" in meta.columns:
            raise ValueError(MSG_TWICE.format(what="patient ids", first="patient_ids",
                                              second="metadata['patient_id']"))
        table["patient_id"] = _as_1d(patient_ids, "patient_ids", n)
    if meta is not None:
        meta.insert(0, "sample_id", ids)

    probs: Any
    if isinstance(pred_probs, pd.DataFrame) and not isinstance(pred_probs.columns, pd.RangeIndex):
        # named columns: matched to class names by the builder, never taken by position
        if "sample_id" in map(str, pred_probs.columns):
            raise ValueError(MSG_PROBS_SAMPLE_ID)
        if len(pred_probs) != n:
            raise ValueError(NPY_ROWS.format(what="pred_probs", got=len(pred_probs), expected=n))
        probs = pred_probs.reset_index(drop=True).copy()
        probs.columns = [str(c) for c in probs.columns]
        probs.insert(0, "sample_id", ids)
    else:
        probs = _as_2d(pred_probs, "pred_probs")
    emb = _as_2d(embeddings, "embeddings") if embeddings is not None else None
    img = np.asarray(images) if images is not None else None

    if y is None:  # unlabeled: the rows (ids, patients, metadata) are one metadata table
        rows = table if meta is None else table.merge(meta, on="sample_id", how="left")
        table, meta = None, rows
    prepared = prepare_predictions(
        table, probs, embeddings=emb, metadata=meta, images=img, class_names=class_names,
        secret_file=secret_file, invalid_rows="raise",
    )
    for w in prepared.warnings:
        warnings.warn(w, stacklevel=2)

    run_json: dict[str, Any] = {}
    if deployment_prevalence is not None:
        value = deployment_value(deployment_prevalence, prepared.class_names)
        config = with_deployment(config, value, checks)
        run_json["deployment"] = {"prevalence": value, "classes": prepared.class_names,
                                  "source": "medaudit.audit_predictions"}
    if run is None:
        ctx = AuditContext.from_arrays(prepared.manifest, prepared.class_names,
                                       **prepared.evidence())
        return audit_context(ctx, checks=checks, config=config, strict=strict)
    write_predictions_run(prepared, run.path, overwrite=overwrite, run_json=run_json,
                          stage="medaudit.audit_predictions")
    return audit_run(run, checks=checks, config=config, strict=strict)
