"""One operating threshold for everyone: checks, reports and the dashboard use this module.

A probabilistic model becomes a test only at a threshold. medaudit chooses it once,
on the out-of-fold probabilities, and records it, so that every sensitivity,
specificity, PPV or NPV it reports refers to the same decision rule:

* ``"youden"`` (default): the threshold maximising sensitivity + specificity - 1
  (Youden, Cancer 1950) on the ROC curve of the OOF probabilities;
* ``"sensitivity"`` / ``"specificity"``: the highest (lowest) threshold that keeps
  sensitivity (specificity) at or above ``target``, as screening programmes fix a
  minimum sensitivity;
* ``"fixed"``: the threshold ``target`` itself (e.g. 0.5).

Multi-class runs get one point per class, one-vs-rest (the class's probability
against all other classes).

Sensitivity and specificity do not depend on prevalence; PPV and NPV do, so they are
always computed at a stated prevalence (:func:`predictive_values`, Bayes' rule; Altman
& Bland, BMJ 1994), never silently at the training set's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from audit.stats import Estimate, bootstrap_ci, finite_or_none, wilson_ci

__all__ = [
    "METHODS",
    "OperatingPoint",
    "choose_operating_point",
    "choose_operating_points",
    "metrics_at_threshold",
    "predictive_values",
]

Method = Literal["youden", "sensitivity", "specificity", "fixed"]
METHODS: tuple[str, ...] = ("youden", "sensitivity", "specificity", "fixed")


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold on one class's probability, and what it achieves.

    Attributes
    ----------
    positive_class : int
        The class whose probability is thresholded (one-vs-rest).
    threshold : float
        Predict the positive class when its probability is ``>= threshold``.
    method : str
        How the threshold was chosen (see the module docstring).
    target : float or None
        The target sensitivity / specificity, or the fixed threshold.
    sensitivity, specificity : Estimate
        At the threshold, on the rows it was chosen on, with Wilson intervals
        (or patient-cluster bootstrap intervals when rows are grouped).
    n_positive, n_negative : int
        Rows of each kind it was chosen on.
    """

    positive_class: int
    threshold: float
    method: str
    target: float | None
    sensitivity: Estimate
    specificity: Estimate
    n_positive: int
    n_negative: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (intervals in the one interval shape)."""
        return {
            "positive_class": self.positive_class,
            "threshold": finite_or_none(self.threshold, 6),
            "method": self.method,
            "target": self.target,
            "sensitivity": self.sensitivity.to_dict(),
            "specificity": self.specificity.to_dict(),
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
        }

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: positive calls for ``(N, K)`` probabilities."""
        return np.asarray(probs)[:, self.positive_class] >= self.threshold


def _check(labels: np.ndarray, probs: np.ndarray, positive_class: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must have shape (N, K) with N = len(labels) = {y.shape[0]}; "
                         f"got {p.shape}")
    if not 0 <= positive_class < p.shape[1]:
        raise ValueError(f"positive_class must be in [0, {p.shape[1]}); got {positive_class}")
    return (y == positive_class), p[:, positive_class]


def _rates(pos: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float]:
    call = score >= threshold
    sens = call[pos].mean() if pos.any() else np.nan
    spec = (~call[~pos]).mean() if (~pos).any() else np.nan
    return float(sens), float(spec)


def metrics_at_threshold(
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    *,
    positive_class: int = 1,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[Estimate, Estimate]:
    """Sensitivity and specificity at ``threshold``, each with a 95 % interval.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` class indices.
    probs : numpy.ndarray
        ``(N, K)`` probabilities.
    threshold : float
    positive_class : int
    groups : numpy.ndarray, optional
        ``(N,)`` patient keys: with repeated patients the intervals come from a
        patient-cluster bootstrap (images of one patient are not independent);
        otherwise Wilson score intervals.
    n_boot, seed : int
        Bootstrap replicates and seed.

    Returns
    -------
    sensitivity, specificity : Estimate
    """
    pos, score = _check(labels, probs, positive_class)
    call = score >= threshold
    clustered = groups is not None and len(np.unique(groups)) < len(groups)
    if not clustered:
        return (wilson_ci(int(call[pos].sum()), int(pos.sum())),
                wilson_ci(int((~call[~pos]).sum()), int((~pos).sum())))

    def sens(p: np.ndarray, c: np.ndarray) -> float:
        return float(c[p].mean()) if p.any() else np.nan

    def spec(p: np.ndarray, c: np.ndarray) -> float:
        return float((~c[~p]).mean()) if (~p).any() else np.nan

    g = np.asarray(groups)
    return (bootstrap_ci(sens, pos, call, groups=g, n_boot=n_boot, seed=seed),
            bootstrap_ci(spec, pos, call, groups=g, n_boot=n_boot, seed=seed))


def choose_operating_point(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    positive_class: int = 1,
    method: Method = "youden",
    target: float | None = None,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> OperatingPoint:
    """Choose and describe the operating threshold of one class (see the module docstring).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` class indices (out-of-fold rows).
    probs : numpy.ndarray
        ``(N, K)`` out-of-fold probabilities.
    positive_class : int
        The class thresholded one-vs-rest (default 1, the positive class of a
        binary task).
    method : {'youden', 'sensitivity', 'specificity', 'fixed'}
    target : float, optional
        Required for ``'sensitivity'``, ``'specificity'`` (in (0, 1]) and
        ``'fixed'`` (the threshold).
    groups : numpy.ndarray, optional
        ``(N,)`` patient keys for the intervals (see :func:`metrics_at_threshold`).
    seed : int
        Bootstrap seed.

    Returns
    -------
    OperatingPoint

    Raises
    ------
    ValueError
        For an unknown method, a missing or out-of-range target, or labels with
        no row of the positive class or none of the others.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    pos, score = _check(labels, probs, positive_class)
    if not pos.any() or pos.all():
        raise ValueError(f"an operating point for class {positive_class} needs rows of that class "
                         f"and of the others; got {int(pos.sum())} of {len(pos)}")
    if method != "youden" and target is None:
        raise ValueError(f"method {method!r} needs a target")
    if method in ("sensitivity", "specificity") and not 0 < float(target) <= 1:  # type: ignore[arg-type]
        raise ValueError(f"target {method} must be in (0, 1]; got {target!r}")
    candidates = np.unique(score)
    if method == "fixed":
        threshold = float(target)  # type: ignore[arg-type]
    else:
        # threshold at every distinct score: call >= t
        order = np.sort(score)
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        tp = n_pos - np.searchsorted(np.sort(score[pos]), candidates, side="left")
        tn = np.searchsorted(np.sort(score[~pos]), candidates, side="left")
        sens, spec = tp / n_pos, tn / n_neg
        if method == "youden":
            j = sens + spec - 1
            best = np.flatnonzero(j == j.max())
            threshold = float(candidates[best[len(best) // 2]])
        elif method == "sensitivity":
            ok = np.flatnonzero(sens >= float(target) - 1e-12)  # type: ignore[arg-type]
            threshold = float(candidates[ok.max()]) if ok.size else float(order[0])
        else:
            ok = np.flatnonzero(spec >= float(target) - 1e-12)  # type: ignore[arg-type]
            threshold = float(candidates[ok.min()]) if ok.size else float(order[-1]) + 1e-12
    sens_e, spec_e = metrics_at_threshold(labels, probs, threshold, positive_class=positive_class,
                                          groups=groups, seed=seed)
    return OperatingPoint(positive_class, threshold, method, None if target is None else float(target),
                          sens_e, spec_e, int(pos.sum()), int((~pos).sum()))


def choose_operating_points(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    method: Method = "youden",
    target: float | None = None,
    groups: np.ndarray | None = None,
    classes: Sequence[int] | None = None,
    seed: int = 0,
) -> dict[int, OperatingPoint]:
    """One operating point per class, one-vs-rest (binary tasks: class 1 only).

    Returns
    -------
    dict
        Class index -> :class:`OperatingPoint`; classes absent from ``labels`` are left out.
    """
    k = np.asarray(probs).shape[1]
    wanted = list(classes) if classes is not None else ([1] if k == 2 else list(range(k)))
    present = set(np.unique(labels).tolist())
    return {c: choose_operating_point(labels, probs, positive_class=c, method=method,
                                      target=target, groups=groups, seed=seed)
            for c in wanted if c in present and len(present) > 1}


def predictive_values(
    sensitivity: float | np.ndarray, specificity: float | np.ndarray, prevalence: float | np.ndarray
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """PPV and NPV at a prevalence, by Bayes' rule (vectorised).

    ``PPV = se p / (se p + (1 - sp)(1 - p))``, ``NPV = sp (1 - p) / (sp (1 - p) + (1 - se) p)``;
    an interval of (se, sp) maps to an interval of PPV/NPV by applying this to
    bootstrap replicates or to the interval ends (both are monotone in se and sp).

    Parameters
    ----------
    sensitivity, specificity : float or numpy.ndarray
    prevalence : float or numpy.ndarray
        In (0, 1).

    Returns
    -------
    ppv, npv : float or numpy.ndarray
        NaN where the denominator is zero.
    """
    se, sp, p = (np.asarray(x, dtype=np.float64) for x in (sensitivity, specificity, prevalence))
    if np.any((p <= 0) | (p >= 1)):
        raise ValueError(f"prevalence must be in (0, 1); got {prevalence!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = se * p / (se * p + (1 - sp) * (1 - p))
        npv = sp * (1 - p) / (sp * (1 - p) + (1 - se) * p)
    if ppv.ndim == 0:
        return float(ppv), float(npv)
    return ppv, npv
