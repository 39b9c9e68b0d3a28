"""Recalibration: fit a calibrator with netcal, record it, apply it anywhere.

Calibrators are fitted by ``netcal`` (Küppers et al., CVPRW 2020), a required
dependency, and recorded as plain numbers (``{"name", "params"}``, JSON-ready).
:func:`apply_calibrator` is the one function that turns recorded parameters back
into calibrated probabilities; reports and the dashboard call it instead of
re-implementing a calibrator, and the tests check it against netcal's own
``transform``.

=============  =====================================  ============================
name           calibrated probability                 netcal class (classes)
=============  =====================================  ============================
temperature    ``softmax(log p / T)``                 ``TemperatureScaling`` (any K)
logistic       ``sigmoid(a logit p1 + b)`` (Platt)    ``LogisticCalibration`` (2)
beta           ``sigmoid(a ln p1 - b ln(1-p1) + c)``  ``BetaCalibration`` (2)
isotonic       piecewise-linear monotone map of p1    ``IsotonicRegression`` (2)
histogram      mean outcome of p1's bin               ``HistogramBinning`` (2)
=============  =====================================  ============================

References: Guo et al., ICML 2017 (temperature); Platt 1999 (logistic); Kull,
Silva Filho & Flach, AISTATS 2017 (beta); Zadrozny & Elkan, KDD 2002 (isotonic);
Zadrozny & Elkan, ICML 2001 (histogram binning).

:func:`cross_fit` measures a calibrator honestly: it is fitted on the other
patient folds and applied to each fold (cross-fitting), so the "after" metrics
are never computed on the rows the calibrator was fitted on.

``import audit.recalibration`` does not load netcal (nor torch, which netcal
imports); fitting does.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from scipy.special import expit, logit, softmax

__all__ = [
    "BINARY_ONLY",
    "CALIBRATORS",
    "apply_calibrator",
    "candidates_for",
    "choose_calibrator",
    "cross_fit",
    "fit_calibrator",
]

Calibrator = Literal["temperature", "logistic", "beta", "isotonic", "histogram"]
#: Calibrators :func:`fit_calibrator` knows, in the order the check tries them.
CALIBRATORS: tuple[str, ...] = ("temperature", "logistic", "beta", "isotonic", "histogram")
#: Calibrators defined for two classes only.
BINARY_ONLY: tuple[str, ...] = ("logistic", "beta", "isotonic", "histogram")
EPS = 1e-6

MSG_UNKNOWN = "calibrator must be one of {valid}; got {name!r}"
MSG_BINARY = "calibrator {name!r} is defined for two classes; the probabilities have {k} columns"


def _probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, K >= 2); got {p.shape}")
    return p


def _check_name(name: str, k: int) -> None:
    if name not in CALIBRATORS:
        raise ValueError(MSG_UNKNOWN.format(valid=list(CALIBRATORS), name=name))
    if name in BINARY_ONLY and k != 2:
        raise ValueError(MSG_BINARY.format(name=name, k=k))


def fit_calibrator(
    name: Calibrator, labels: np.ndarray, probs: np.ndarray, *, n_bins: int = 10
) -> dict[str, Any]:
    """Fit calibrator ``name`` with netcal and return its recorded form.

    Parameters
    ----------
    name : {'temperature', 'logistic', 'beta', 'isotonic', 'histogram'}
    labels : numpy.ndarray
        ``(N,)`` class indices.
    probs : numpy.ndarray
        ``(N, K)`` probabilities to calibrate.
    n_bins : int
        Bins of histogram binning.

    Returns
    -------
    dict
        ``{"name": name, "params": {...}}`` (plain floats and lists), the input of
        :func:`apply_calibrator`.

    Raises
    ------
    ValueError
        For an unknown name, or a binary-only calibrator with K > 2.
    """
    p = _probs(probs)
    y = np.asarray(labels).astype(np.int64)
    _check_name(name, p.shape[1])
    p1 = np.clip(p[:, 1], EPS, 1 - EPS) if p.shape[1] == 2 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # netcal warns about absent classes in small folds
        if name == "temperature":
            from netcal.scaling import TemperatureScaling

            ts = TemperatureScaling()
            ts.fit(p1 if p1 is not None else np.clip(p, EPS, 1.0), y)
            weight = float(np.ravel(ts.weights)[0])  # netcal scales the logits by 1 / T
            params: dict[str, Any] = {"temperature": 1.0 / weight}
        elif name == "logistic":
            from netcal.scaling import LogisticCalibration

            lc = LogisticCalibration()
            lc.fit(p1, y)
            params = {"slope": float(np.ravel(lc.weights)[0]),
                      "intercept": float(np.ravel(lc.intercept)[0])}
        elif name == "beta":
            from netcal.scaling import BetaCalibration

            bc = BetaCalibration()
            bc.fit(p1, y)
            w = np.ravel(bc._sites["weights"]["values"])
            c = float(np.ravel(bc._sites["bias"]["values"])[0])
            params = {"a": float(w[0]), "b": float(w[1]), "c": c}
        elif name == "isotonic":
            from netcal.binning import IsotonicRegression

            ir = IsotonicRegression()
            ir.fit(p1, y)
            iso = ir._iso
            params = {"x": [float(v) for v in iso.X_thresholds_],
                      "y": [float(v) for v in iso.y_thresholds_]}
        else:
            from netcal.binning import HistogramBinning

            hb = HistogramBinning(bins=n_bins)
            hb.fit(p1, y)
            params = {"edges": [float(v) for v in hb._bin_bounds[0]],
                      "values": [float(v) for v in hb._bin_map]}
    return {"name": name, "params": params}


def apply_calibrator(calibrator: Mapping[str, Any], probs: np.ndarray) -> np.ndarray:
    """Calibrated probabilities from a recorded calibrator (pure numpy).

    Parameters
    ----------
    calibrator : mapping
        ``{"name", "params"}`` as returned by :func:`fit_calibrator` and stored in
        the ``calibration`` finding's ``evidence["calibrator"]``.
    probs : numpy.ndarray
        ``(N, K)`` probabilities.

    Returns
    -------
    numpy.ndarray
        ``(N, K)`` calibrated probabilities, rows summing to one.

    Raises
    ------
    ValueError
        For an unknown calibrator or missing parameters.
    """
    p = _probs(probs)
    name = str(calibrator.get("name"))
    _check_name(name, p.shape[1])
    prm = calibrator.get("params") or {}
    try:
        if name == "temperature":
            return softmax(np.log(np.clip(p, EPS, 1.0)) / float(prm["temperature"]), axis=1)
        p1 = np.clip(p[:, 1], EPS, 1 - EPS)
        if name == "logistic":
            q = expit(float(prm["slope"]) * logit(p1) + float(prm["intercept"]))
        elif name == "beta":
            q = expit(float(prm["a"]) * np.log(p1) - float(prm["b"]) * np.log1p(-p1) + float(prm["c"]))
        elif name == "isotonic":
            q = np.interp(p1, np.asarray(prm["x"], float), np.asarray(prm["y"], float))
        else:
            edges, values = np.asarray(prm["edges"], float), np.asarray(prm["values"], float)
            idx = np.clip(np.digitize(p1, edges[1:-1], right=False), 0, len(values) - 1)
            q = values[idx]
    except KeyError as err:
        raise ValueError(f"calibrator {name!r} is missing parameter {err}; got {dict(prm)}") from None
    q = np.clip(q, 0.0, 1.0)
    return np.column_stack([1 - q, q])


def cross_fit(
    name: Calibrator,
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_splits: int = 5,
    seed: int = 0,
    n_bins: int = 10,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Cross-fitted calibrated probabilities: each patient fold calibrated by the others.

    Parameters
    ----------
    name : str
        One of :data:`CALIBRATORS`.
    labels : numpy.ndarray
        ``(N,)``.
    probs : numpy.ndarray
        ``(N, K)``.
    groups : numpy.ndarray, optional
        ``(N,)`` patient keys; all images of a patient fall in one fold.
    n_splits : int
        Folds (fewer when a class has fewer patients).
    seed : int
    n_bins : int

    Returns
    -------
    calibrated : numpy.ndarray
        ``(N, K)``: row ``i`` calibrated by a calibrator that never saw row ``i``'s patient.
    fold_calibrators : list of dict
        The calibrator of each fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    p = _probs(probs)
    y = np.asarray(labels).astype(np.int64)
    g = np.asarray(groups) if groups is not None else np.arange(len(y))
    smallest = int(np.bincount(y).min()) if len(y) else 0
    k = max(2, min(n_splits, smallest))
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    out = np.empty_like(p)
    fitted = []
    for train, test in splitter.split(p, y, g):
        cal = fit_calibrator(name, y[train], p[train], n_bins=n_bins)
        out[test] = apply_calibrator(cal, p[test])
        fitted.append(cal)
    return out, fitted




def candidates_for(names: tuple[str, ...] | list[str], k: int) -> list[str]:
    """The calibrators of ``names`` defined for ``k`` classes (order kept)."""
    for n in names:
        _check_name(n, 2)
    return [n for n in names if k == 2 or n not in BINARY_ONLY]


def choose_calibrator(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    candidates: tuple[str, ...] | list[str] = CALIBRATORS,
    groups: np.ndarray | None = None,
    n_splits: int = 5,
    seed: int = 0,
    n_bins: int = 10,
) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
    """Cross-fit every candidate; choose the one with the lowest cross-fitted Brier score.

    The Brier score is a proper scoring rule (it rewards calibration and
    discrimination together); the choice is made on cross-fitted probabilities,
    so the chosen calibrator's "after" numbers carry a small optimism of selecting
    one of a few candidates, not of fitting on the rows it is scored on.

    Returns
    -------
    name : str
        The chosen calibrator.
    cross_fitted : dict
        Candidate -> ``(N, K)`` cross-fitted probabilities.
    final : dict
        The chosen calibrator refitted on all rows (``{"name", "params"}``): the one
        to apply to new data.
    """
    from audit.calibration import brier_score

    p = _probs(probs)
    y = np.asarray(labels).astype(np.int64)
    names = candidates_for(candidates, p.shape[1])
    if not names:
        raise ValueError(f"no calibrator of {list(candidates)} is defined for {p.shape[1]} classes; "
                         "add 'temperature'")
    cross = {n: cross_fit(n, y, p, groups=groups, n_splits=n_splits, seed=seed, n_bins=n_bins)[0]
             for n in names}
    best = min(names, key=lambda n: brier_score(y, cross[n]))
    return best, cross, fit_calibrator(best, y, p, n_bins=n_bins)  # type: ignore[arg-type]
