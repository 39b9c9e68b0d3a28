"""Shared machinery of the shortcut and subgroup checks (private).

* which manifest columns describe groups of images (:func:`group_columns`), with
  age cut into the bands of ``class_balance_and_size`` and numeric acquisition
  fields cut into quantile bins;
* which of them are the same partition of the rows (:func:`same_partitions`), so
  that ``site``, ``scanner`` and ``dicom_manufacturer`` are reported once;
* the cross-validation folds every probe uses (:func:`probe_folds`): the run's
  folds when it has them, else patient-grouped stratified folds;
* the one-column model (:func:`level_rate_scores`): a logistic regression on the
  column's one-hot levels, fitted without penalty, predicts the training folds'
  class shares of each level; it is computed in closed form (counts), which is
  exact and makes a permutation null of 1,000 draws cheap;
* :func:`fast_auc`, an AUC for scores with few distinct values (counts per value),
  and :func:`stratified_auc`, the AUC of pairs within strata only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from audit.metrics import (
    ClusterBootstrap,
    auc_with_ci,
    percentile_interval,
    weighted_auc_fn,
    weighted_macro_auc_fn,
)
from audit.stats import Estimate

__all__ = [
    "IDENTIFIER_COLUMNS",
    "ClusterBootstrap",
    "GroupColumn",
    "auc_estimate",
    "binary_level_null",
    "fast_auc",
    "group_columns",
    "level_rate_scores",
    "multiclass_auc",
    "percentile_interval",
    "permutation_p_value",
    "probe_folds",
    "same_partitions",
    "stratified_auc",
    "weighted_auc_fn",
    "weighted_macro_auc_fn",
]

#: Columns that identify rows, patients or files, never groups of images.
IDENTIFIER_COLUMNS: frozenset[str] = frozenset(
    {"sample_id", "patient_key", "study_key", "series_key", "path", "label", "label_name",
     "split", "patient_id", "study_id"}
)  # fmt: skip
#: Missing values form their own level under this name.
MISSING = "<missing>"


@dataclass(frozen=True)
class GroupColumn:
    """A manifest column as groups of rows.

    Attributes
    ----------
    name : str
        Column name (``age_band`` for banded ``age``).
    codes : numpy.ndarray
        ``(N,)`` int64 level index of every row.
    levels : list of str
        Level names, indexed by code.
    """

    name: str
    codes: np.ndarray
    levels: list[str]


def _as_levels(values: pd.Series, *, numeric_bins: int, max_levels: int) -> pd.Series | None:
    """String levels of one column, or ``None`` when it cannot describe groups."""
    s = values
    if pd.api.types.is_bool_dtype(s):
        s = s.astype("string")
    elif pd.api.types.is_numeric_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        n_unique = num.nunique(dropna=True)
        if n_unique > max_levels:
            try:
                binned = pd.qcut(num, numeric_bins, duplicates="drop")
            except ValueError:
                return None
            s = binned.astype("string")
        else:
            s = num.map(lambda v: f"{v:g}", na_action="ignore").astype("string")
    else:
        s = s.astype("string")
    s = s.fillna(MISSING)
    n_levels = s.nunique()
    if n_levels < 2 or n_levels > max_levels:
        return None
    return s


def group_columns(
    manifest: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    age_bands: Sequence[float] = (0, 18, 40, 65, 130),
    numeric_bins: int = 5,
    max_levels: int = 20,
) -> list[GroupColumn]:
    """The manifest columns that describe groups of images, as level codes.

    Parameters
    ----------
    manifest : pandas.DataFrame
        N rows.
    columns : sequence of str, optional
        Only these columns (``age`` becomes ``age_band``); default every column
        except :data:`IDENTIFIER_COLUMNS`, ``label_*`` annotator columns and
        ``exclude``.
    exclude : sequence of str
        Columns never used.
    age_bands : sequence of float
        Edges of the age bands (years, left-closed).
    numeric_bins : int
        Quantile bins of a numeric column with more than ``max_levels`` values.
    max_levels : int
        Columns with more levels than this (after binning) are skipped: they
        identify rows rather than describe groups.

    Returns
    -------
    list of GroupColumn
        Columns with at least two levels (constant columns are left out);
        missing values form the level ``'<missing>'``.
    """
    out: list[GroupColumn] = []
    names = list(manifest.columns) if columns is None else [c for c in columns if c in manifest]
    for col in names:
        col = str(col)
        if col in IDENTIFIER_COLUMNS or col.startswith("label_") or col in exclude:
            continue
        if col.startswith("_"):
            continue
        if col == "age":
            edges = list(age_bands)
            labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
            num = pd.to_numeric(manifest[col], errors="coerce")
            s = pd.cut(num, edges, right=False, labels=labels).astype("string").fillna(MISSING)
            name = "age_band"
            if s.nunique() < 2:
                continue
        else:
            levels = _as_levels(manifest[col], numeric_bins=numeric_bins, max_levels=max_levels)
            if levels is None:
                continue
            s, name = levels, col
        codes, uniques = pd.factorize(s, sort=True)
        out.append(GroupColumn(name, codes.astype(np.int64), [str(u) for u in uniques]))
    return out


def same_partitions(columns: Sequence[GroupColumn]) -> list[list[GroupColumn]]:
    """Columns grouped by the partition of the rows they define (order kept).

    Two columns are the same partition when each level of one is exactly one
    level of the other (e.g. ``site`` and ``dicom_manufacturer`` in the demo).
    """
    groups: dict[bytes, list[GroupColumn]] = {}
    for col in columns:
        # relabel levels by first occurrence: equal partitions give equal arrays
        _, first, inv = np.unique(col.codes, return_index=True, return_inverse=True)
        canon = np.argsort(np.argsort(first))[inv.ravel()].astype(np.int64)
        groups.setdefault(canon.tobytes(), []).append(col)
    return list(groups.values())


def coarsens(fine: np.ndarray, coarse: np.ndarray) -> bool:
    """Whether ``coarse`` is a coarsening of ``fine``: each level of ``fine`` lies in one level of it.

    E.g. in the demo ``dicom_modality`` (CR at site B, DX at sites A and C) coarsens
    ``site``: a grouping that only merges levels of another says nothing new about
    the rows.

    Parameters
    ----------
    fine, coarse : numpy.ndarray
        ``(N,)`` integer level codes of two groupings of the same rows.

    Returns
    -------
    bool
    """
    pairs = np.unique(np.stack([np.asarray(fine), np.asarray(coarse)], axis=1), axis=0)
    return len(np.unique(pairs[:, 0])) == len(pairs)


def probe_folds(
    labels: np.ndarray,
    patients: np.ndarray,
    run_folds: np.ndarray | None,
    *,
    n_splits: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """``(N,)`` fold of every row for the probes.

    The run's folds (rows with ``folds == -1`` keep ``-1`` and are scored by
    models fitted on all out-of-fold rows), else ``StratifiedGroupKFold`` by
    patient with ``n_splits`` folds (fewer when a class is small).
    """
    if run_folds is not None:
        f = np.asarray(run_folds).astype(np.int64)
        if len(np.unique(f[f >= 0])) >= 2:
            return f
    counts = np.bincount(labels)
    k = int(min(n_splits, max(2, counts[counts > 0].min())))
    folds = np.full(len(labels), -1, np.int64)
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, test) in enumerate(sgkf.split(np.zeros(len(labels)), labels, patients)):
        folds[test] = i
    return folds


def level_rate_scores(
    codes: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray,
    n_levels: int,
    n_classes: int,
    *,
    prior: float = 1.0,
) -> np.ndarray:
    """Out-of-fold class shares of each row's level: the one-column model.

    An unpenalised logistic (softmax) regression on a column's one-hot levels
    predicts, for each level, the class shares of that level in its training
    rows. Each row's score is the share computed without its fold (rows of
    fold ``-1``: from all other rows), with ``prior`` pseudo-rows of the
    training prevalence added to each level so that a level absent from the
    training folds gets the overall prevalence.

    Returns
    -------
    numpy.ndarray
        ``(N, K)`` scores (rows sum to 1).
    """
    n = len(codes)
    fold_ids = np.unique(folds)
    cell = codes * n_classes + labels
    total = np.bincount(cell, minlength=n_levels * n_classes).reshape(n_levels, n_classes)
    out = np.empty((n, n_classes))
    for f in fold_ids:
        rows = folds == f
        if f < 0:
            train = total
        else:
            train = total - np.bincount(cell[rows], minlength=n_levels * n_classes).reshape(
                n_levels, n_classes
            )
        prev = train.sum(0) / max(train.sum(), 1)
        rate = (train + prior * prev) / (train.sum(1, keepdims=True) + prior)
        out[rows] = rate[codes[rows]]
    return out


def binary_level_null(
    codes: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    n_levels: int,
    n_perm: int,
    rng: np.random.Generator,
    prior: float = 1.0,
) -> np.ndarray:
    """Permutation null of the one-column AUC for a binary label, from cell counts only.

    Same model as :func:`level_rate_scores` (class 1), recomputed for
    ``n_perm`` permutations of ``y`` from (fold, level) counts: ``O(N)`` per
    permutation.

    Returns
    -------
    numpy.ndarray
        ``(n_perm,)`` AUCs.
    """
    fidx = np.unique(folds, return_inverse=True)[1].ravel()
    n_f = int(fidx.max()) + 1
    heldout = np.unique(folds) < 0
    cell = fidx * n_levels + codes
    n_cell = np.bincount(cell, minlength=n_f * n_levels).reshape(n_f, n_levels).astype(float)
    n_lvl = n_cell.sum(0)
    n_fold = n_cell.sum(1)
    n_all = n_fold.sum()
    null = np.empty(n_perm)
    for b in range(n_perm):
        yp = rng.permutation(y)
        k_cell = np.bincount(cell, weights=yp, minlength=n_f * n_levels).reshape(n_f, n_levels)
        k_lvl = k_cell.sum(0)
        k_fold = k_cell.sum(1)
        train_n = np.where(heldout[:, None], n_lvl, n_lvl - n_cell)
        train_k = np.where(heldout[:, None], k_lvl, k_lvl - k_cell)
        tot_n = np.where(heldout, n_all, n_all - n_fold)
        tot_k = np.where(heldout, k_fold.sum(), k_fold.sum() - k_fold)
        prev = tot_k / np.maximum(tot_n, 1)
        score = (train_k + prior * prev[:, None]) / (train_n + prior)
        values, inv = np.unique(score.ravel(), return_inverse=True)
        p = np.bincount(inv.ravel(), weights=k_cell.ravel(), minlength=len(values))
        q = np.bincount(inv.ravel(), weights=(n_cell - k_cell).ravel(), minlength=len(values))
        below = np.cumsum(q) - q
        null[b] = (p * (below + 0.5 * q)).sum() / (p.sum() * q.sum())
    return null


def fast_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count one half); NaN without both kinds of row.

    Sorts once; fast enough for permutation nulls of scores with few distinct
    values.
    """
    pos = np.asarray(positive, dtype=bool)
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    values, inv = np.unique(scores, return_inverse=True)
    inv = inv.ravel()
    p = np.bincount(inv[pos], minlength=len(values)).astype(np.float64)
    q = np.bincount(inv[~pos], minlength=len(values)).astype(np.float64)
    below = np.concatenate([[0.0], np.cumsum(q)[:-1]])
    return float((p * (below + 0.5 * q)).sum() / (n_pos * n_neg))


def multiclass_auc(scores: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """Binary AUC of class 1, or the macro one-vs-rest AUC over present classes."""
    if n_classes == 2:
        return fast_auc(scores[:, 1], labels == 1)
    vals = [fast_auc(scores[:, c], labels == c) for c in range(n_classes) if (labels == c).any()]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """``(1 + #{null >= observed}) / (1 + B)`` (Phipson & Smyth 2010: never 0)."""
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed):
        return 1.0
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size))


def stratified_auc(scores: np.ndarray, positive: np.ndarray, strata: np.ndarray) -> float:
    """AUC over positive-negative pairs of the same stratum only (NaN when there are none).

    A property that only stands in for a stratum (a marker present on one
    site's images) has a stratified AUC near 0.5, whatever its overall AUC.
    """
    num, den = 0.0, 0.0
    pos = np.asarray(positive, dtype=bool)
    for s in np.unique(strata):
        rows = strata == s
        n_p = int(pos[rows].sum())
        n_n = int(rows.sum()) - n_p
        if n_p == 0 or n_n == 0:
            continue
        num += fast_auc(scores[rows], pos[rows]) * n_p * n_n
        den += n_p * n_n
    return num / den if den else float("nan")


def auc_estimate(
    labels: np.ndarray,
    scores: np.ndarray,
    patients: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Estimate:
    """AUC of ``scores`` ``(N, K)`` for ``labels`` with a 95 % interval, patients given.

    :func:`audit.metrics.auc_with_ci` with ``groups=patients`` (DeLong for binary
    labels and one image per patient, else a weighted patient bootstrap).
    """
    return auc_with_ci(labels, scores, groups=patients, n_boot=n_boot, seed=seed)
