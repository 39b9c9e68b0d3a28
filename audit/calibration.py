"""Calibration metrics: do predicted probabilities match observed frequencies?

Pure functions of labels ``(N,)`` and probabilities ``(N, K)``. Two views of a
multi-class prediction are measured, as in the literature:

* **top-label** (Guo et al., ICML 2017): the confidence ``max_k p_k`` against
  whether the arg-max class is right. This is what ``netcal.metrics.ECE`` measures,
  and the tests cross-check :func:`ece` against it. For two classes, like netcal,
  the probability of class 1 against the rate of class 1.
* **class-wise** (Kull et al., NeurIPS 2019): every class's probability against
  whether the row is of that class (one-vs-rest), averaged over classes. For two
  classes the reliability diagram of class 1 (the predicted risk of the positive
  class against the observed rate) is the one a clinician reads.

Contents
--------
=====================================  ==============================================
:func:`reliability_bins`                reliability-diagram data: ``[{lo, hi, n,
                                        mean_predicted, observed_rate}]``
:func:`ece`                             expected calibration error, equal-width or
                                        equal-mass bins (Naeini et al., AAAI 2015)
:func:`classwise_ece`                   class-wise ECE (Kull et al. 2019)
:func:`sweep_ece`                       ECE with the monotone-sweep bin count (Roelofs
                                        et al., AISTATS 2022), less biased than a fixed
                                        bin count for small N
:func:`mce`                             maximum calibration error (largest bin gap)
:func:`brier_score`                     Brier score (binary) / multi-class Brier
:func:`calibration_slope_intercept`     logistic recalibration slope and calibration-
                                        in-the-large intercept (Cox 1958; Van Calster
                                        et al., J Clin Epidemiol 2016)
:func:`calibration_slope`               the slope with a patient-cluster bootstrap interval,
                                        one-vs-rest pooled for K > 2 (used by the
                                        ``overfitting`` check)
:func:`calibration_metrics`             all of the above with patient-cluster bootstrap
                                        intervals
=====================================  ==============================================
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.special import logit

from audit.stats import Estimate, bootstrap_ci

__all__ = [
    "METRICS",
    "brier_score",
    "calibration_metrics",
    "calibration_slope",
    "calibration_slope_intercept",
    "classwise_ece",
    "ece",
    "mce",
    "reliability_bins",
    "sweep_ece",
]

Strategy = Literal["width", "mass"]
#: Probabilities are clipped to ``[EPS, 1 - EPS]`` before taking logits.
EPS = 1e-6
#: Names of the metrics of :func:`calibration_metrics`, in report order.
METRICS: tuple[str, ...] = (
    "ece", "ece_equal_mass", "sweep_ece", "classwise_ece", "mce", "brier",
    "calibration_slope", "calibration_intercept",
)  # fmt: skip


def _as_arrays(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, K >= 2) with N = len(labels) = {y.shape[0]}; "
                         f"got {p.shape}")
    return y, p


def _top_label(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and correctness, each ``(N,)``; for two classes class 1's
    probability and whether the row is of class 1 (as netcal measures binary tasks)."""
    if p.shape[1] == 2:
        return p[:, 1], (y == 1).astype(np.float64)
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def _bin_index(score: np.ndarray, n_bins: int, strategy: Strategy) -> tuple[np.ndarray, np.ndarray]:
    """Bin of every score and the bin edges ``(B + 1,)`` (bins are right-closed but the first)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    if strategy == "width":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "mass":
        edges = np.quantile(score, np.linspace(0.0, 1.0, n_bins + 1))
        edges[0], edges[-1] = min(edges[0], 0.0), max(edges[-1], 1.0)
    else:
        raise ValueError(f"strategy must be 'width' or 'mass'; got {strategy!r}")
    idx = np.clip(np.searchsorted(edges[1:-1], score, side="left"), 0, n_bins - 1)
    return idx, edges


def _binned(score: np.ndarray, hit: np.ndarray, n_bins: int,
            strategy: Strategy) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: count, mean score, observed rate, and the edges."""
    idx, edges = _bin_index(score, n_bins, strategy)
    n = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, score, minlength=n_bins) / n
        rate = np.bincount(idx, hit, minlength=n_bins) / n
    return n, conf, rate, edges


def _ece_from(score: np.ndarray, hit: np.ndarray, n_bins: int, strategy: Strategy) -> float:
    n, conf, rate, _ = _binned(score, hit, n_bins, strategy)
    ok = n > 0
    return float(np.sum(n[ok] * np.abs(conf[ok] - rate[ok])) / n.sum())


def reliability_bins(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    n_bins: int = 10,
    strategy: Strategy = "width",
    positive_class: int | None = None,
) -> list[dict[str, Any]]:
    """Reliability-diagram data (the shape reports and the dashboard read).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` class indices.
    probs : numpy.ndarray
        ``(N, K)`` probabilities.
    n_bins : int
    strategy : {'width', 'mass'}
        Equal-width bins on ``[0, 1]`` or equal-mass (quantile) bins.
    positive_class : int, optional
        Bin this class's probability against the rate of this class (one-vs-rest);
        default: top-label confidence against accuracy.

    Returns
    -------
    list of dict
        One entry per non-empty bin: ``lo``, ``hi`` (edges), ``n`` (rows),
        ``mean_predicted`` (mean probability), ``observed_rate`` (share of the
        class, or accuracy for top-label).
    """
    y, p = _as_arrays(labels, probs)
    if positive_class is None:
        score, hit = _top_label(y, p)
    else:
        score, hit = p[:, positive_class], (y == positive_class).astype(np.float64)
    n, conf, rate, edges = _binned(score, hit, n_bins, strategy)
    return [{"lo": round(float(edges[b]), 6), "hi": round(float(edges[b + 1]), 6), "n": int(n[b]),
             "mean_predicted": round(float(conf[b]), 6), "observed_rate": round(float(rate[b]), 6)}
            for b in range(n_bins) if n[b] > 0]


def ece(labels: np.ndarray, probs: np.ndarray, *, n_bins: int = 10,
        strategy: Strategy = "width") -> float:
    """Top-label expected calibration error, ``sum_b n_b / N |acc_b - conf_b|``.

    Naeini, Cooper & Hauskrecht, AAAI 2015; Guo et al., ICML 2017. Equal to
    ``netcal.metrics.ECE(n_bins).measure(probs, labels)`` for ``strategy='width'``.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` class indices.
    probs : numpy.ndarray
        ``(N, K)``.
    n_bins : int
    strategy : {'width', 'mass'}

    Returns
    -------
    float
        In ``[0, 1]``.
    """
    y, p = _as_arrays(labels, probs)
    return _ece_from(*_top_label(y, p), n_bins, strategy)


def classwise_ece(labels: np.ndarray, probs: np.ndarray, *, n_bins: int = 10,
                  strategy: Strategy = "width") -> float:
    """Class-wise ECE: the one-vs-rest ECE of every class, averaged (Kull et al. 2019).

    For two classes only class 1 is measured (class 0's curve mirrors it).

    Returns
    -------
    float
    """
    y, p = _as_arrays(labels, probs)
    classes = [1] if p.shape[1] == 2 else range(p.shape[1])
    return float(np.mean([_ece_from(p[:, c], (y == c).astype(np.float64), n_bins, strategy)
                          for c in classes]))


def mce(labels: np.ndarray, probs: np.ndarray, *, n_bins: int = 10,
        strategy: Strategy = "width") -> float:
    """Maximum calibration error: the largest top-label gap over non-empty bins.

    Returns
    -------
    float
    """
    y, p = _as_arrays(labels, probs)
    n, conf, rate, _ = _binned(*_top_label(y, p), n_bins, strategy)
    ok = n > 0
    return float(np.max(np.abs(conf[ok] - rate[ok])))


def sweep_ece(labels: np.ndarray, probs: np.ndarray, *, max_bins: int | None = None) -> float:
    """ECE with equal-mass bins, as many as keep the bin accuracies monotone.

    Roelofs, Cain, Shlens & Mozer, "Mitigating bias in calibration error
    estimation", AISTATS 2022: the number of equal-mass bins grows while the
    per-bin accuracy stays non-decreasing in confidence; the last monotone count
    is used. Less biased than a fixed 10 bins at small N.

    Parameters
    ----------
    labels, probs : numpy.ndarray
        ``(N,)`` and ``(N, K)``.
    max_bins : int, optional
        Upper limit of the sweep (default ``N``).

    Returns
    -------
    float
    """
    y, p = _as_arrays(labels, probs)
    score, hit = _top_label(y, p)
    order = np.argsort(score, kind="stable")
    score, hit = score[order], hit[order]
    n = len(score)
    best = _ece_sorted(score, hit, 1)
    for b in range(2, (max_bins or n) + 1):
        split = np.array_split(np.arange(n), b)
        rates = np.array([hit[s].mean() for s in split])
        if np.any(np.diff(rates) < 0):
            break
        best = _ece_sorted(score, hit, b)
    return best


def _ece_sorted(score: np.ndarray, hit: np.ndarray, b: int) -> float:
    parts = np.array_split(np.arange(len(score)), b)
    return float(sum(len(s) * abs(score[s].mean() - hit[s].mean()) for s in parts) / len(score))


def brier_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """Brier score: ``mean (p_1 - y)^2`` for two classes, ``mean sum_k (p_k - 1[y=k])^2`` otherwise.

    Brier, Monthly Weather Review 1950.

    Returns
    -------
    float
    """
    y, p = _as_arrays(labels, probs)
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - (y == 1)) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def _logistic_fit(x: np.ndarray, t: np.ndarray, *, offset: bool) -> tuple[float, float]:
    """Unpenalised maximum-likelihood fit of ``logit P(t = 1) = a + b x`` by Newton-Raphson.

    With ``offset=True`` only ``a`` is fitted (``b`` fixed at 1: ``x`` is an offset).
    Two parameters at most, so a few vectorised Newton steps replace a general
    solver (about 100 times faster than scikit-learn inside a bootstrap; the tests
    check it against :class:`sklearn.linear_model.LogisticRegression`).

    Parameters
    ----------
    x : numpy.ndarray
        ``(N,)`` predictor (the predicted log-odds).
    t : numpy.ndarray
        ``(N,)`` 0/1 outcome.
    offset : bool

    Returns
    -------
    a, b : float
        NaN when ``t`` has one value or the fit diverges (perfect separation).
    """
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    nan = (float("nan"), float("nan") if not offset else 1.0)
    if t.size == 0 or t.min() == t.max():
        return nan
    mean = t.mean()
    X = np.ones((len(x), 1)) if offset else np.column_stack([np.ones_like(x), x])
    off = x if offset else 0.0
    beta = np.zeros(X.shape[1])
    beta[0] = np.log(mean / (1 - mean)) - (float(np.mean(x)) if offset else 0.0)
    for _ in range(50):
        eta = np.clip(X @ beta + off, -30, 30)
        mu = 1 / (1 + np.exp(-eta))
        hess = (X * (mu * (1 - mu))[:, None]).T @ X
        try:
            step = np.linalg.solve(hess, X.T @ (t - mu))
        except np.linalg.LinAlgError:
            return nan
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) >= 1e3:
        return nan
    return (float(beta[0]), 1.0) if offset else (float(beta[0]), float(beta[1]))


def _slope(t: np.ndarray, x: np.ndarray) -> float:
    """Slope ``b`` of :func:`_logistic_fit` (argument order of :func:`audit.stats.bootstrap_ci`)."""
    return _logistic_fit(x, t, offset=False)[1]


def calibration_slope_intercept(
    labels: np.ndarray, probs: np.ndarray, *, positive_class: int = 1
) -> tuple[float, float]:
    """Calibration slope and calibration-in-the-large of one class (one-vs-rest).

    The slope ``b`` of ``logit P(y = c) = a + b logit(p_c)`` (Cox, Biometrika 1958):
    1 is ideal, below 1 means over-confident (predictions too extreme). The
    intercept is the ``a`` of ``logit P(y = c) = a + logit(p_c)`` (slope fixed at
    1): 0 is ideal, negative means risks over-estimated on average (Van Calster
    et al., J Clin Epidemiol 2016, the "weak" calibration levels).

    Returns
    -------
    slope, intercept : float
        NaN when only one class is present.
    """
    y, p = _as_arrays(labels, probs)
    t = (y == positive_class).astype(np.float64)
    if t.min() == t.max():
        return float("nan"), float("nan")
    x = logit(np.clip(p[:, positive_class], EPS, 1 - EPS))
    _, slope = _logistic_fit(x, t, offset=False)
    intercept, _ = _logistic_fit(x, t, offset=True)
    return slope, intercept


def calibration_slope(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 300,
    seed: int = 0,
) -> Estimate:
    """Calibration slope: logistic regression of the outcome on the predicted log-odds.

    Binary: ``logit P(y = 1) = alpha + beta * logit(p1)``; for K > 2 classes the
    one-vs-rest pairs of every class are stacked (one pooled slope). ``beta``
    < 1 means predictions too extreme (overfitting), > 1 too timid (Cox 1958;
    Van Calster et al. 2019). Fitted by maximum likelihood without penalty
    (:func:`_logistic_fit`, the fit of :func:`calibration_slope_intercept`).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` class indices.
    pred_probs : numpy.ndarray
        ``(N, K)`` out-of-sample probabilities.
    groups : numpy.ndarray, optional
        ``(N,)`` patient keys for a patient-level bootstrap.
    n_boot : int
    seed : int

    Returns
    -------
    Estimate
        With a percentile-bootstrap 95 % interval.
    """
    y = np.asarray(labels)
    p = np.clip(np.asarray(pred_probs, dtype=float), EPS, 1 - EPS)
    k = p.shape[1]
    if k == 2:
        yy, xx, gg = (y == 1).astype(int), np.log(p[:, 1] / p[:, 0]), groups
    else:
        yy = np.concatenate([(y == c).astype(int) for c in range(k)])
        xx = np.concatenate([np.log(p[:, c] / (1 - p[:, c])) for c in range(k)])
        gg = None if groups is None else np.tile(np.asarray(groups), k)
        if gg is None:
            gg = np.tile(np.arange(len(y)), k)  # keep an image's K pairs together
    est = bootstrap_ci(_slope, yy, xx, n_boot=n_boot, seed=seed, groups=gg)
    return Estimate(
        est.estimate,
        est.low,
        est.high,
        0.95,
        "logistic recalibration slope (Cox 1958)"
        + ("" if k == 2 else ", one-vs-rest pairs of all classes pooled")
        + f"; {est.method}",
    )


def _metric_fn(name: str, n_bins: int) -> Any:
    fns = {
        "ece": lambda y, p: ece(y, p, n_bins=n_bins),
        "ece_equal_mass": lambda y, p: ece(y, p, n_bins=n_bins, strategy="mass"),
        "sweep_ece": lambda y, p: sweep_ece(y, p),
        "classwise_ece": lambda y, p: classwise_ece(y, p, n_bins=n_bins),
        "mce": lambda y, p: mce(y, p, n_bins=n_bins),
        "brier": brier_score,
        "calibration_slope": lambda y, p: calibration_slope_intercept(y, p)[0],
        "calibration_intercept": lambda y, p: calibration_slope_intercept(y, p)[1],
    }
    return fns[name]


def calibration_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_bins: int = 10,
    n_boot: int = 200,
    seed: int = 0,
    metrics: tuple[str, ...] = METRICS,
) -> dict[str, Estimate]:
    """Every calibration metric with a patient-cluster bootstrap interval.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` class indices.
    probs : numpy.ndarray
        ``(N, K)`` probabilities.
    groups : numpy.ndarray, optional
        ``(N,)`` patient keys: patients are resampled, not images.
    n_bins : int
        Bins of the fixed-bin metrics.
    n_boot : int
        Bootstrap replicates.
    seed : int
    metrics : tuple of str
        Subset of :data:`METRICS`. The slope and intercept are those of class 1
        (two classes only; left out otherwise).

    Returns
    -------
    dict
        Metric name -> :class:`audit.stats.Estimate` (percentile bootstrap).
    """
    y, p = _as_arrays(labels, probs)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown calibration metrics {unknown}; valid: {list(METRICS)}")
    wanted = [m for m in metrics if p.shape[1] == 2 or not m.startswith("calibration_")]
    return {m: bootstrap_ci(_metric_fn(m, n_bins), y, p, groups=groups, n_boot=n_boot, seed=seed)
            for m in wanted}

