"""Fit a learning curve and extrapolate it: would more data help?

The inverse power law of Figueroa, Zeng-Treitler, Kandula & Ngo (BMC Med Inform
Decis Mak 12:8, 2012), written for a performance that rises towards a plateau::

    auc(n) = a - b * n ** (-c),     0.5 <= a <= 1,  b >= 0,  0 < c <= 3

with ``n`` the training-set size, ``a`` the plateau, ``b`` and ``c`` how fast it is
approached. It is fitted by weighted non-linear least squares
(:func:`scipy.optimize.curve_fit`, bounded trust-region reflective), each point
weighted by its own standard error when given (Figueroa et al. weight points by
their precision as well). The uncertainty of a prediction comes from a residual
bootstrap of the fit (Efron & Tibshirani 1993, sec. 9.5): the curve is refitted to
the fitted values plus resampled (weighted) residuals, and the predictions of the
refits give a percentile interval, which widens where the curve is extrapolated
far. (The normal approximation of the parameters is poor here: ``a``, ``b`` and
``c`` trade off strongly over a short range of sizes.)

Pure: arrays in, numbers out. Used by the ``overfitting`` check (on
``train/learning_curve.json``) and by ``bench/bench_overfitting.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from audit.stats import Estimate

__all__ = ["LearningCurveFit", "fit_inverse_power_law", "inverse_power_law"]

_METHOD = (
    "inverse power law auc(n) = a - b n^-c (Figueroa et al. 2012), weighted least squares "
    "(scipy.optimize.curve_fit); interval: residual bootstrap of the fit ({n} refits)"
)


def inverse_power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """``a - b * n ** (-c)`` (see the module docstring).

    Parameters
    ----------
    n : numpy.ndarray
        Training-set sizes (> 0).
    a, b, c : float
        Plateau, scale and decay rate.

    Returns
    -------
    numpy.ndarray
        Same shape as ``n``.
    """
    return a - b * np.power(np.asarray(n, dtype=float), -c)


@dataclass(frozen=True)
class LearningCurveFit:
    """A fitted inverse power law.

    Attributes
    ----------
    a, b, c : float
        Fitted parameters (plateau, scale, decay rate).
    boot : numpy.ndarray
        ``(B, 3)`` parameters of the residual-bootstrap refits.
    n_points : int
        Points fitted.
    rmse : float
        Root-mean-square residual of the fit.
    """

    a: float
    b: float
    c: float
    boot: np.ndarray
    n_points: int
    rmse: float

    def predict(self, n: float, *, level: float = 0.95) -> Estimate:
        """Predicted AUC at training-set size ``n`` with its interval.

        Parameters
        ----------
        n : float
            Training-set size (> 0).
        level : float
            Confidence level.

        Returns
        -------
        Estimate
            Clipped to ``[0, 1]``.
        """
        return self._estimate(lambda a, b, c: self._auc(n, a, b, c), level)

    def gain(self, n_from: float, n_to: float, *, level: float = 0.95) -> Estimate:
        """Predicted AUC gain from ``n_from`` to ``n_to`` training images, with its interval."""
        return self._estimate(
            lambda a, b, c: self._auc(n_to, a, b, c) - self._auc(n_from, a, b, c), level
        )

    @staticmethod
    def _auc(n: float, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The law at size ``n`` for each parameter triple, clipped to an AUC's range."""
        return np.clip(inverse_power_law(np.asarray(float(n)), a, b, c), 0, 1)

    def _estimate(self, fn: Callable[..., np.ndarray], level: float) -> Estimate:
        """``fn(a, b, c)`` at the fitted parameters, with the bootstrap refits' interval."""
        reps = fn(*self.boot.T)
        point = float(fn(np.array([self.a]), np.array([self.b]), np.array([self.c]))[0])
        lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
        return Estimate(
            point,
            float(min(lo, point)),
            float(max(hi, point)),
            level,
            _METHOD.format(n=len(self.boot)),
        )


def _curve_fit(
    x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None, p0: tuple[float, float, float]
) -> np.ndarray:
    from scipy.optimize import curve_fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OptimizeWarning when the covariance is singular
        popt, _ = curve_fit(
            inverse_power_law,
            x,
            y,
            p0=p0,
            sigma=sigma,
            absolute_sigma=False,
            bounds=([0.5, 0.0, 1e-3], [1.0, np.inf, 3.0]),
            method="trf",
            maxfev=20000,
        )
    return np.asarray(popt, dtype=float)


def fit_inverse_power_law(
    n: np.ndarray,
    auc: np.ndarray,
    *,
    se: np.ndarray | None = None,
    n_boot: int = 300,
    seed: int = 0,
) -> LearningCurveFit:
    """Fit ``auc(n) = a - b n^-c`` to observed (size, AUC) points.

    Parameters
    ----------
    n : numpy.ndarray
        ``(M,)`` training-set sizes (> 0); at least 2 distinct values, M >= 4.
    auc : numpy.ndarray
        ``(M,)`` AUCs measured out-of-sample after training on ``n`` images.
    se : numpy.ndarray, optional
        ``(M,)`` standard errors of the AUCs (weights); equal weights when omitted.
    n_boot : int
        Residual-bootstrap refits for the prediction intervals.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    LearningCurveFit

    Raises
    ------
    ValueError
        With fewer than 4 finite points or fewer than 2 distinct sizes, or when
        the fit does not converge.

    Examples
    --------
    >>> import numpy as np
    >>> n = np.repeat([100, 200, 400, 800], 3)
    >>> fit = fit_inverse_power_law(n, inverse_power_law(n, 0.9, 2.0, 0.6))
    >>> round(fit.a, 3), round(fit.c, 2)
    (0.9, 0.6)
    """
    x = np.asarray(n, dtype=float)
    y = np.asarray(auc, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    sigma = None
    if se is not None:
        s = np.asarray(se, dtype=float)
        ok &= np.isfinite(s) & (s > 0)
        sigma = s[ok]
    x, y = x[ok], y[ok]
    if x.size < 4 or np.unique(x).size < 2:
        raise ValueError(
            f"a learning curve needs at least 4 finite points at 2 or more training sizes; got "
            f"{x.size} point(s) at {np.unique(x).size} size(s)"
        )
    a0 = float(min(max(y.max() + 0.02, 0.51), 1.0))
    c0 = 0.5
    b0 = float(max(a0 - y.min(), 1e-3) * x.min() ** c0)
    try:
        popt = _curve_fit(x, y, sigma, (a0, b0, c0))
    except RuntimeError as err:
        raise ValueError(f"the inverse power law did not fit the learning curve: {err}") from None
    fitted = inverse_power_law(x, *popt)
    resid = y - fitted
    # residual bootstrap on the weighted scale (residual / sigma), centred
    w = np.ones_like(y) if sigma is None else sigma
    std = resid / w
    std = std - std.mean()
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        y_star = fitted + rng.choice(std, size=std.size, replace=True) * w
        try:
            boot.append(_curve_fit(x, y_star, sigma, tuple(popt)))
        except RuntimeError:  # pragma: no cover - a refit that does not converge is dropped
            continue
    if not boot:  # pragma: no cover
        raise ValueError("the inverse power law did not fit any bootstrap replicate")
    return LearningCurveFit(
        float(popt[0]),
        float(popt[1]),
        float(popt[2]),
        np.array(boot),
        int(x.size),
        float(np.sqrt(np.mean(resid**2))),
    )
