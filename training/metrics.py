"""Discrimination metrics with confidence intervals for training summaries.

* AUC: binary ROC AUC, or the macro one-vs-rest average for more than two
  classes (:func:`sklearn.metrics.roc_auc_score`).
* 95 % CI of the AUC: DeLong's method (DeLong, DeLong & Clarke-Pearson,
  Biometrics 1988, fast midrank form of Sun & Xu, IEEE SPL 2014) for a binary
  task with one image per patient; otherwise a patient-level (cluster)
  percentile bootstrap, because images of one patient are not independent and
  DeLong would then be too narrow.
* Accuracy with a Wilson score interval (Wilson, JASA 1927).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from audit.stats import auc_ci, wilson_ci

__all__ = ["MetricCI", "accuracy_with_ci", "auc_score", "auc_with_ci", "delong_auc_ci"]



@dataclass(frozen=True)
class MetricCI:
    """A metric value with its 95 % confidence interval and the method used."""

    value: float
    low: float
    high: float
    method: str

    def to_dict(self) -> dict[str, float | str | None]:
        """JSON-ready form (NaN as ``None``)."""

        def clean(v: float) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {"value": clean(self.value), "ci95": [clean(self.low), clean(self.high)],
                "method": self.method}

    def __str__(self) -> str:
        if not math.isfinite(self.value):
            return "n/a"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def auc_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary AUC or macro one-vs-rest AUC; NaN when a class is absent.

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
        return float("nan")
    if k == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    if present.size < k:
        # macro over the classes present, one-vs-rest
        return float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in present]))
    return float(roc_auc_score(labels, probs / probs.sum(1, keepdims=True), multi_class="ovr",
                               average="macro"))


def delong_auc_ci(labels: np.ndarray, scores: np.ndarray) -> MetricCI:
    """Binary AUC with DeLong's 95 % confidence interval.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` 0/1 labels.
    scores : numpy.ndarray
        ``(N,)`` scores of the positive class.

    Returns
    -------
    MetricCI
        Interval ``AUC +- 1.96 * SE`` clipped to ``[0, 1]``.
    """
    labels = np.asarray(labels).astype(bool)
    m, n = int(labels.sum()), int((~labels).sum())
    if m < 2 or n < 2:
        return MetricCI(float("nan"), float("nan"), float("nan"), "DeLong")
    est = auc_ci(labels.astype(int), np.asarray(scores, dtype=np.float64), transform="none")
    return MetricCI(est.estimate, est.low, est.high, "DeLong")


def auc_with_ci(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> MetricCI:
    """AUC with a 95 % CI: DeLong, or a patient-level bootstrap (see module doc).

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
    MetricCI
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if labels.size == 0:
        return MetricCI(float("nan"), float("nan"), float("nan"), "none")
    clustered = groups is not None and pd.Series(groups).duplicated().any()
    if probs.shape[1] == 2 and not clustered:
        return delong_auc_ci(labels == 1, probs[:, 1])
    value = auc_score(labels, probs)
    if not math.isfinite(value):
        return MetricCI(value, float("nan"), float("nan"), "none")
    rng = np.random.default_rng(seed)
    if clustered:
        codes, uniq = pd.factorize(pd.Series(groups))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniq) + 1))
        members = [order[bounds[i] : bounds[i + 1]] for i in range(len(uniq))]
        method = f"patient-level bootstrap ({n_boot} resamples, percentile)"
    else:
        members = None
        method = f"bootstrap ({n_boot} resamples, percentile)"
    stats = []
    for _ in range(n_boot):
        if members is None:
            idx = rng.integers(0, labels.size, labels.size)
        else:
            pick = rng.integers(0, len(members), len(members))
            idx = np.concatenate([members[i] for i in pick])
        if np.unique(labels[idx]).size < 2:
            continue
        stats.append(auc_score(labels[idx], probs[idx]))
    if not stats:
        return MetricCI(value, float("nan"), float("nan"), method)
    low, high = np.nanpercentile(stats, [2.5, 97.5])
    return MetricCI(value, float(low), float(high), method)


def accuracy_with_ci(labels: np.ndarray, probs: np.ndarray) -> MetricCI:
    """Accuracy of ``argmax(probs)`` with a Wilson score 95 % interval.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` int labels.
    probs : numpy.ndarray
        ``(N, K)`` probabilities.

    Returns
    -------
    MetricCI
    """
    labels = np.asarray(labels)
    n = labels.size
    if n == 0:
        return MetricCI(float("nan"), float("nan"), float("nan"), "Wilson")
    est = wilson_ci(int(np.sum(np.asarray(probs).argmax(1) == labels)), n)
    return MetricCI(est.estimate, est.low, est.high, "Wilson")
