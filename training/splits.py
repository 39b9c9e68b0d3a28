"""Patient-grouped fold assignment and the inner validation split.

Two rules keep out-of-fold (OOF) predictions honest:

1. A patient's images are all in one fold (:class:`~sklearn.model_selection.StratifiedGroupKFold`
   grouped by ``patient_key``), so no model sees a patient it later scores.
2. Early stopping and the learning-rate schedule look only at an *inner*
   validation split carved from the training folds, grouped by patient as
   well; the fold's out-of-fold rows are never used for any decision.

Rows of a user-given split (``holdout_split``, a value of the manifest ``split``
column such as ``"test"``) are kept out of the K folds and marked ``-1``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

__all__ = ["HOLDOUT_FOLD", "FoldSplit", "assign_folds", "fold_split", "inner_split"]

_log = logging.getLogger(__name__)

#: Fold index of holdout-split rows (scored by the fold ensemble, not out-of-fold).
HOLDOUT_FOLD = -1

_TOO_FEW_PATIENTS = (
    "cannot make {folds} patient-grouped folds: class {cls!r} has only {n} patient(s) "
    "{where}; every class needs at least {folds} patients. Use fewer folds "
    "(folds={suggest}) or add patients of that class"
)


@dataclass(frozen=True)
class FoldSplit:
    """Row indices (into the manifest) of one fold's three parts.

    Attributes
    ----------
    train : numpy.ndarray
        ``(n_train,)`` int64, rows the fold model is fitted on.
    inner_val : numpy.ndarray
        ``(n_inner,)`` int64, inner validation rows (early stopping), disjoint
        from ``train`` and ``oof`` by patient.
    oof : numpy.ndarray
        ``(n_oof,)`` int64, the fold's out-of-fold rows (the rows of fold ``k``,
        scored by the model trained without them).
    holdout : numpy.ndarray
        ``(n_holdout,)`` int64, rows of the user's holdout split (fold ``-1``),
        scored by every fold's model.
    """

    train: np.ndarray
    inner_val: np.ndarray
    oof: np.ndarray
    holdout: np.ndarray


def _holdout_mask(manifest: pd.DataFrame, holdout_split: str | None) -> np.ndarray:
    n = len(manifest)
    if holdout_split is None:
        return np.zeros(n, dtype=bool)
    if "split" not in manifest.columns:
        raise ValueError(
            f"holdout split {holdout_split!r} was requested but the manifest has no 'split' "
            "column; add one at ingestion or train without a holdout split "
            "(holdout_split=None)"
        )
    split = manifest["split"].astype("string")
    mask = (split == holdout_split).fillna(False).to_numpy(dtype=bool)
    if not mask.any():
        values = sorted(str(v) for v in split.dropna().unique())
        raise ValueError(
            f"holdout split {holdout_split!r} matches no row of the manifest 'split' column; "
            f"its values are {values[:20]}"
        )
    if mask.all():
        raise ValueError(
            f"every row of the manifest is in holdout split {holdout_split!r}; nothing is "
            "left to train on"
        )
    return mask


def _check_enough_patients(
    labels: np.ndarray, groups: np.ndarray, n_splits: int, where: str
) -> None:
    frame = pd.DataFrame({"y": labels, "g": groups})
    per_class = frame.groupby("y")["g"].nunique()
    for cls, n in per_class.items():
        if n < n_splits:
            raise ValueError(
                _TOO_FEW_PATIENTS.format(
                    folds=n_splits, cls=int(cls), n=int(n), where=where,
                    suggest=max(2, int(per_class.min())),
                )
            )


def assign_folds(
    manifest: pd.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    holdout_split: str | None = None,
) -> np.ndarray:
    """Assign every manifest row to a patient-grouped, label-stratified fold.

    Parameters
    ----------
    manifest : pandas.DataFrame
        N rows with ``label`` and ``patient_key`` (and ``split`` when
        ``holdout_split`` is given).
    folds : int
        Number of folds K (>= 2).
    seed : int
        Shuffle seed of :class:`~sklearn.model_selection.StratifiedGroupKFold`.
    holdout_split : str, optional
        ``split`` value whose rows get fold :data:`HOLDOUT_FOLD` (``-1``).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int16 fold index in ``[0, K)``, or ``-1`` for holdout-split rows.

    Raises
    ------
    ValueError
        When a class has fewer patients than folds, or the holdout split is
        absent or empty.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2; got {folds}")
    missing = [c for c in ("label", "patient_key") if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest needs columns {missing} to assign folds")
    hold = _holdout_mask(manifest, holdout_split)
    labels = manifest["label"].to_numpy(dtype=np.int64)
    groups = manifest["patient_key"].astype(str).to_numpy()
    if hold.any():
        shared = np.intersect1d(groups[hold], groups[~hold])
        if shared.size:
            _log.warning(
                "%d patient(s) have rows both in holdout split %r and in the cross-validation "
                "rows (e.g. %s); holdout scores are then optimistic",
                shared.size, holdout_split, list(shared[:3]),
            )
    idx = np.flatnonzero(~hold)
    _check_enough_patients(labels[idx], groups[idx], folds, "in the cross-validation rows")
    out = np.full(len(manifest), HOLDOUT_FOLD, dtype=np.int16)
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(cv.split(idx, labels[idx], groups[idx])):
        out[idx[test]] = k
    return out


def inner_split(
    rows: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    fraction: float = 0.15,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a patient-grouped, stratified inner validation set from training rows.

    Parameters
    ----------
    rows : numpy.ndarray
        ``(M,)`` row indices of the training folds.
    labels, groups : numpy.ndarray
        ``(N,)`` labels and patient keys of *all* manifest rows.
    fraction : float
        Approximate share of the patients put in the inner validation set;
        realised as one fold of a ``round(1 / fraction)``-fold
        :class:`~sklearn.model_selection.StratifiedGroupKFold`.
    seed : int
        Shuffle seed.

    Returns
    -------
    fit_rows, val_rows : numpy.ndarray
        Disjoint int64 row indices, no patient in both.

    Raises
    ------
    ValueError
        When a class has fewer than 2 patients in ``rows``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n_splits = max(2, round(1.0 / fraction))
    y, g = labels[rows], groups[rows]
    n_patients = pd.Series(g).groupby(y).nunique()
    if int(n_patients.min()) < 2:
        raise ValueError(
            "the training folds have a class with fewer than 2 patients, so no patient-grouped "
            "inner validation split is possible; use fewer folds or add patients"
        )
    n_splits = min(n_splits, int(n_patients.min()))
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    fit, val = next(iter(cv.split(rows, y, g)))
    return np.sort(rows[fit]), np.sort(rows[val])


def fold_split(
    folds_array: np.ndarray,
    fold: int,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    inner_val_fraction: float,
    seed: int,
) -> FoldSplit:
    """The train / inner-validation / out-of-fold / holdout rows of fold ``fold``.

    Parameters
    ----------
    folds_array : numpy.ndarray
        ``(N,)`` from :func:`assign_folds`.
    fold : int
        Fold index in ``[0, K)``.
    labels, groups : numpy.ndarray
        ``(N,)`` labels and patient keys.
    inner_val_fraction : float
        See :func:`inner_split`.
    seed : int
        Base seed; the inner split uses ``seed + 7919 * (fold + 1)``.

    Returns
    -------
    FoldSplit

    Raises
    ------
    ValueError
        When ``fold`` is not in ``[0, K)``.
    """
    k = int(folds_array.max()) + 1
    if not 0 <= fold < k:
        raise ValueError(f"fold must be in [0, {k}); got {fold}")
    oof = np.flatnonzero(folds_array == fold).astype(np.int64)
    train_all = np.flatnonzero((folds_array != fold) & (folds_array != HOLDOUT_FOLD))
    fit, val = inner_split(
        train_all, labels, groups, fraction=inner_val_fraction, seed=seed + 7919 * (fold + 1)
    )
    holdout = np.flatnonzero(folds_array == HOLDOUT_FOLD).astype(np.int64)
    return FoldSplit(train=fit, inner_val=val, oof=oof, holdout=holdout)
