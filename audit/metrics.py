"""Discrimination metrics of a model's predictions, each with its uncertainty.

Shared by the training summary (``run.json['train']``) and the audit checks, so a
number means the same everywhere and is written in one JSON shape
(:meth:`audit.stats.Estimate.to_dict`).

* AUC: binary ROC AUC, or the macro one-vs-rest average for more than two
  classes (:func:`sklearn.metrics.roc_auc_score`).
* 95 % CI of the AUC: DeLong's method (DeLong, DeLong & Clarke-Pearson,
  Biometrics 1988, fast midrank form of Sun & Xu, IEEE SPL 2014) for a binary
  task with one image per patient; otherwise a patient-level (cluster)
  percentile bootstrap (:func:`audit.stats.bootstrap_ci`), because images of one
  patient are not independent and DeLong would then be too narrow.
* Accuracy with a Wilson score interval (Wilson, JASA 1927).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from audit.stats import Estimate, auc_ci, bootstrap_ci, wilson_ci

__all__ = ["accuracy_with_ci", "auc_score", "auc_with_ci"]

_NAN = float("nan")


def auc_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary AUC or macro one-vs-rest AUC; NaN when fewer than two classes are present.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` int labels in ``[0, K)``.
    probs : numpy.ndarray
        ``(N, K)`` probabilities (rows summing to 1).

    Returns
    -------
    float
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    present = np.unique(labels)
    if present.size < 2:
        return _NAN
    if k == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    if present.size < k:
        # macro over the classes present, one-vs-rest
        return float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in present]))
    return float(roc_auc_score(labels, probs / probs.sum(1, keepdims=True), multi_class="ovr",
                               average="macro"))


def auc_with_ci(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Estimate:
    """AUC with a 95 % CI: DeLong, or a patient-level bootstrap (see the module docstring).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` int labels.
    probs : numpy.ndarray
        ``(N, K)`` probabilities.
    groups : numpy.ndarray, optional
        ``(N,)`` patient keys; with repeated patients the bootstrap resamples
        patients.
    n_boot : int
        Bootstrap resamples.
    seed : int
        Bootstrap seed.

    Returns
    -------
    Estimate
        NaN estimate (method ``"none"``) when fewer than two classes are present.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    value = auc_score(labels, probs) if labels.size else _NAN
    if not np.isfinite(value):
        return Estimate(value, _NAN, _NAN, 0.95, "none")
    clustered = groups is not None and bool(pd.Series(groups).duplicated().any())
    if probs.shape[1] == 2 and not clustered:
        pos = labels == 1
        if pos.sum() < 2 or (~pos).sum() < 2:
            return Estimate(value, _NAN, _NAN, 0.95, "DeLong (fewer than 2 per class)")
        return auc_ci(pos.astype(int), probs[:, 1], transform="none")
    est = bootstrap_ci(auc_score, labels, probs, n_boot=n_boot, seed=seed,
                       groups=np.asarray(groups) if clustered else None)
    unit = "patient-level" if clustered else "row-level"
    return Estimate(value, est.low, est.high, 0.95, f"{unit} {est.method}")


def accuracy_with_ci(labels: np.ndarray, probs: np.ndarray) -> Estimate:
    """Accuracy of ``argmax(probs)`` with a Wilson score 95 % interval.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` int labels.
    probs : numpy.ndarray
        ``(N, K)`` probabilities.

    Returns
    -------
    Estimate
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return Estimate(_NAN, _NAN, _NAN, 0.95, "Wilson")
    return wilson_ci(int(np.sum(np.asarray(probs).argmax(1) == labels)), labels.size)
