"""Statistics shared by the audit checks.

Every function here is pure (arrays in, numbers out), seeded where it draws
random numbers, and documents the method it implements with a reference. The
checks report what these functions return in ``Finding.evidence``; the
:class:`Estimate` tuple carries the point estimate, the interval, its level and
the method so that a reviewer can see how each number was obtained.

Contents
--------
=====================================  ==============================================
:func:`bootstrap_ci`                   percentile bootstrap of any statistic, optionally
                                       resampling clusters (patients) instead of rows
:func:`bootstrap_replicates`           replicates of a vector statistic (one resample
                                       serves several related numbers)
:func:`bootstrap_category_totals`      fast bootstrap replicates of category totals
                                       (rows or clusters resampled)
:func:`two_sample_bootstrap_ci`        bootstrap of a statistic of two independent
                                       samples, each resampled separately
:func:`wilson_ci`                      Wilson score interval of a proportion
:func:`wilson_half_width`              half-width achievable with n at a planning value
:func:`n_for_wilson_half_width`        smallest n that reaches a target half-width
:func:`auc_ci`, :func:`delong_auc`     AUC with DeLong's variance
:func:`cohen_kappa_ci`                 Cohen's kappa (scikit-learn) with the large-sample
                                       standard error of Fleiss, Cohen & Everitt (1969)
:func:`ratings_to_counts`,             Fleiss' kappa (items with any number >= 2 of
:func:`fleiss_kappa`,                  ratings) with a bootstrap interval over items
:func:`fleiss_kappa_ci`
:func:`interpret_kappa`                verbal bands of Landis & Koch (1977) and McHugh
                                       (2012)
:func:`robust_center_scale`            median and normal-consistent MAD (scipy), with a
                                       mean-deviation fallback when the MAD is 0
=====================================  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy import stats as _sps
from scipy.special import expit as _expit

__all__ = [
    "Estimate",
    "auc_ci",
    "bootstrap_category_totals",
    "bootstrap_ci",
    "bootstrap_replicates",
    "cohen_kappa_ci",
    "delong_auc",
    "finite_or_none",
    "fleiss_kappa",
    "fleiss_kappa_ci",
    "interpret_kappa",
    "n_for_wilson_half_width",
    "ratings_to_counts",
    "robust_center_scale",
    "two_sample_bootstrap_ci",
    "wilson_ci",
    "wilson_half_width",
]


class Estimate(NamedTuple):
    """A point estimate with its confidence interval.

    Attributes
    ----------
    estimate : float
        The point estimate.
    low, high : float
        Bounds of the interval (``nan`` when not estimable).
    level : float
        Confidence level, e.g. ``0.95``.
    method : str
        How the interval was computed (quoted in findings).
    """

    estimate: float
    low: float
    high: float
    level: float = 0.95
    method: str = ""

    def to_dict(self, *, digits: int = 4) -> dict[str, Any]:
        """The one JSON shape of an interval in medaudit (``run.json``, findings, reports).

        Returns
        -------
        dict
            ``{"estimate", "ci_low", "ci_high", "level", "method"}``; non-finite
            numbers become ``None``.
        """
        return {
            "estimate": finite_or_none(self.estimate, digits),
            "ci_low": finite_or_none(self.low, digits),
            "ci_high": finite_or_none(self.high, digits),
            "level": self.level,
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        """Inverse of :meth:`to_dict` (``None`` back to NaN)."""

        def _f(v: Any) -> float:
            return float("nan") if v is None else float(v)

        return cls(_f(data["estimate"]), _f(data["ci_low"]), _f(data["ci_high"]),
                   float(data.get("level", 0.95)), str(data.get("method", "")))

    def __str__(self) -> str:
        if not np.isfinite(self.estimate):
            return "n/a"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.estimate:.3f}"
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def finite_or_none(x: Any, digits: int | None = None) -> float | None:
    """``float(x)`` (rounded to ``digits``), or ``None`` when missing or not finite.

    The one NaN-to-``None`` conversion for JSON artifacts (``allow_nan=False``).
    """
    if x is None:
        return None
    v = float(x)
    if not np.isfinite(v):
        return None
    return round(v, digits) if digits is not None else v


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    return float(_sps.norm.ppf(1 - alpha / 2))


# -- bootstrap ---------------------------------------------------------------------


def _resample_indices(
    rng: np.random.Generator, n: int, groups: np.ndarray | None
) -> np.ndarray:
    if groups is None:
        return rng.integers(0, n, n)
    codes, order = groups
    n_groups = len(order) - 1
    pick = rng.integers(0, n_groups, n_groups)
    starts, stops = order[pick], order[pick + 1]
    lengths = stops - starts
    # concatenate ranges [start, stop) of the picked groups (vectorised)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return codes[np.arange(lengths.sum()) + offsets]


def _group_index(groups: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},) like the arrays; got {groups.shape}")
    _, inv = np.unique(groups, return_inverse=True)
    rows_by_group = np.argsort(inv, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inv))])
    return rows_by_group, bounds


def bootstrap_ci(
    stat_fn: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> Estimate:
    """Percentile bootstrap interval of ``stat_fn(*arrays)``.

    Rows (or, with ``groups``, whole clusters such as patients) are resampled
    with replacement; each replicate evaluates ``stat_fn`` on the same rows of
    every array. Replicates where the statistic is not finite (e.g. a resample
    with one class only) are dropped; their count is part of ``method``.

    Parameters
    ----------
    stat_fn : callable
        ``stat_fn(*arrays) -> float``.
    *arrays : numpy.ndarray
        Arrays sharing their first axis of length N.
    n_boot : int
        Number of replicates.
    alpha : float
        1 - confidence level.
    seed : int
        Seed of the random generator.
    groups : numpy.ndarray, optional
        Shape ``(N,)`` cluster labels: resample clusters, not rows (cluster
        bootstrap, Davison & Hinkley 1997, sec. 3.8), which keeps the
        correlation between images of one patient.

    Returns
    -------
    Estimate
        ``stat_fn`` on the full data with the percentile interval (Efron &
        Tibshirani 1993, ch. 13).

    Raises
    ------
    ValueError
        When the arrays differ in length, are empty, or ``n_boot < 1``.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if n == 0:
        raise ValueError("bootstrap_ci got empty arrays")
    if any(len(a) != n for a in arrs):
        raise ValueError(f"bootstrap_ci arrays differ in length: {[len(a) for a in arrs]}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    rng = np.random.default_rng(seed)
    gidx = _group_index(groups, n) if groups is not None else None
    point = float(stat_fn(*arrs))
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = _resample_indices(rng, n, gidx)
        reps[b] = stat_fn(*(a[idx] for a in arrs))
    ok = np.isfinite(reps)
    unit = "clusters" if groups is not None else "rows"
    method = f"percentile bootstrap over {unit}, {int(ok.sum())} of {n_boot} replicates"
    if not ok.any():
        return Estimate(point, np.nan, np.nan, 1 - alpha, method)
    low, high = np.quantile(reps[ok], [alpha / 2, 1 - alpha / 2])
    return Estimate(point, float(low), float(high), 1 - alpha, method)



def two_sample_bootstrap_ci(
    stat_fn: Callable[[tuple[np.ndarray, ...], tuple[np.ndarray, ...]], float],
    first: tuple[np.ndarray, ...],
    second: tuple[np.ndarray, ...],
    *,
    groups_first: np.ndarray | None = None,
    groups_second: np.ndarray | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Estimate:
    """Percentile bootstrap of a statistic of two independent samples.

    Each replicate resamples the rows (or clusters) of ``first`` and of
    ``second`` separately (a stratified bootstrap, Davison & Hinkley 1997, sec.
    3.2), so both samples keep their sizes; e.g. a prevalence estimated on a
    deployment batch with a confusion matrix from the training data carries the
    uncertainty of both.

    Parameters
    ----------
    stat_fn : callable
        ``stat_fn(first_arrays, second_arrays) -> float``.
    first, second : tuple of numpy.ndarray
        Arrays of each sample, sharing their first axis within the sample.
    groups_first, groups_second : numpy.ndarray, optional
        Cluster labels (patients) of each sample.
    n_boot, alpha, seed
        As in :func:`bootstrap_ci`.

    Returns
    -------
    Estimate
    """
    a = tuple(np.asarray(x) for x in first)
    b = tuple(np.asarray(x) for x in second)
    na, nb = len(a[0]), len(b[0])
    if na == 0 or nb == 0:
        raise ValueError(f"two_sample_bootstrap_ci got an empty sample ({na} and {nb} rows)")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    rng = np.random.default_rng(seed)
    ga = _group_index(groups_first, na) if groups_first is not None else None
    gb = _group_index(groups_second, nb) if groups_second is not None else None
    point = float(stat_fn(a, b))
    reps = np.empty(n_boot)
    for i in range(n_boot):
        ia, ib = _resample_indices(rng, na, ga), _resample_indices(rng, nb, gb)
        reps[i] = stat_fn(tuple(x[ia] for x in a), tuple(x[ib] for x in b))
    ok = np.isfinite(reps)
    unit = "clusters" if groups_first is not None or groups_second is not None else "rows"
    method = (f"percentile bootstrap over the {unit} of both samples (resampled separately), "
              f"{int(ok.sum())} of {n_boot} replicates")
    if not ok.any():
        return Estimate(point, np.nan, np.nan, 1 - alpha, method)
    low, high = np.quantile(reps[ok], [alpha / 2, 1 - alpha / 2])
    return Estimate(point, float(low), float(high), 1 - alpha, method)

def bootstrap_replicates(
    stat_fn: Callable[..., np.ndarray],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Point value and bootstrap replicates of a *vector* statistic.

    Like :func:`bootstrap_ci` (same resampling of rows or clusters, same seed
    stream), for a statistic that returns several numbers at once, so that
    related quantities (e.g. several AUCs and their differences) come from the
    same resamples at the cost of one.

    Parameters
    ----------
    stat_fn : callable
        ``stat_fn(*arrays) -> array of shape (M,)``.
    *arrays : numpy.ndarray
        Arrays sharing their first axis of length N.
    n_boot : int
    seed : int
    groups : numpy.ndarray, optional
        ``(N,)`` cluster labels (resample clusters).

    Returns
    -------
    point : numpy.ndarray
        ``(M,)`` on the full data.
    replicates : numpy.ndarray
        ``(n_boot, M)`` (NaN where the statistic was not finite).

    Raises
    ------
    ValueError
        When the arrays differ in length, are empty, or ``n_boot < 1``.
    """
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0]) if arrs else 0
    if n == 0 or any(len(a) != n for a in arrs):
        raise ValueError(f"bootstrap_replicates needs non-empty arrays of one length; got "
                         f"{[len(a) for a in arrs]}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    rng = np.random.default_rng(seed)
    gidx = _group_index(groups, n) if groups is not None else None
    point = np.asarray(stat_fn(*arrs), dtype=float)
    reps = np.empty((n_boot, point.size))
    for b in range(n_boot):
        idx = _resample_indices(rng, n, gidx)
        reps[b] = stat_fn(*(a[idx] for a in arrs))
    return point, reps


#: Relative cost of one binomial draw of a multinomial to resampling one cluster index.
_MULTINOMIAL_COST = 25


def bootstrap_category_totals(
    categories: np.ndarray,
    n_categories: int,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap replicates of the totals of a categorical variable.

    Equivalent in distribution to resampling rows (or clusters) with
    replacement and counting each category, but computed without touching the
    rows again: rows are exchangeable within a category, so the resampled
    totals are a multinomial draw over categories. With ``groups``, clusters
    with the same category-count pattern are exchangeable, so the draw is a
    multinomial over distinct patterns (patterns found by a 64-bit random
    multiset hash), or, when there are many patterns, a resample of cluster
    indices counted per pattern, whichever is cheaper. Cost is ``O(N)`` once
    plus ``O(n_boot * min(25 P, U))`` for P distinct patterns and U clusters,
    which keeps a cluster bootstrap of a million rows within seconds.

    Parameters
    ----------
    categories : numpy.ndarray
        Shape ``(N,)`` integers in ``[0, n_categories)``.
    n_categories : int
        Number of categories C.
    groups : numpy.ndarray, optional
        Shape ``(N,)`` cluster labels (e.g. patient keys).
    n_boot : int
        Number of replicates B.
    seed : int
        Seed of the random generator.

    Returns
    -------
    numpy.ndarray
        Shape ``(B, C)`` int64 totals per replicate. With ``groups`` the
        replicate's row count varies (it is the sum over resampled clusters).

    Raises
    ------
    ValueError
        When a category is outside ``[0, n_categories)``.
    """
    cats = np.asarray(categories, dtype=np.int64)
    if cats.size and (cats.min() < 0 or cats.max() >= n_categories):
        raise ValueError(f"categories must be in [0, {n_categories}); got values outside")
    rng = np.random.default_rng(seed)
    if groups is None:
        counts = np.bincount(cats, minlength=n_categories)
        return rng.multinomial(len(cats), counts / max(len(cats), 1), size=n_boot).astype(np.int64)
    if len(cats) == 0:
        return np.zeros((n_boot, n_categories), dtype=np.int64)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1 if g.size else 0
    hash_rng = np.random.default_rng(0x5EED)
    weights = hash_rng.integers(1, 2**63 - 1, size=(2, n_categories), dtype=np.uint64)
    keys = np.zeros((2, n_groups), dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.add.at(keys[0], g, weights[0][cats])
        np.add.at(keys[1], g, weights[1][cats])
    _, first, pattern_of_group, pattern_size = np.unique(
        keys.T, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    pattern_of_group = pattern_of_group.ravel()
    n_patterns = len(first)
    # category counts of one representative cluster per pattern
    is_rep = np.zeros(n_groups, dtype=bool)
    is_rep[first] = True
    rows = is_rep[g]
    patterns = np.zeros((n_patterns, n_categories), dtype=np.int64)
    np.add.at(patterns, (pattern_of_group[g[rows]], cats[rows]), 1)
    out = np.empty((n_boot, n_categories), dtype=np.int64)
    chunk = max(1, int(2e7 // max(n_patterns, 1)))
    freq = pattern_size / n_groups
    patterns_f = patterns.astype(np.float64)  # BLAS matmul; exact for counts < 2**53
    # a multinomial draw costs ~P binomials, resampling cluster indices ~U cheap
    # operations: take whichever is cheaper (both are the same distribution)
    use_multinomial = n_patterns * _MULTINOMIAL_COST < n_groups
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        if use_multinomial:
            draws = rng.multinomial(n_groups, freq, size=stop - start)
        else:
            draws = np.stack([
                np.bincount(pattern_of_group[rng.integers(0, n_groups, n_groups)],
                            minlength=n_patterns)
                for _ in range(stop - start)
            ])
        out[start:stop] = np.rint(draws.astype(np.float64) @ patterns_f).astype(np.int64)
    return out


# -- proportions --------------------------------------------------------------------


def wilson_ci(k: int | np.ndarray, n: int | np.ndarray, *, alpha: float = 0.05) -> Estimate:
    """Wilson score interval of a binomial proportion ``k / n``.

    Parameters
    ----------
    k : int
        Successes.
    n : int
        Trials (``n = 0`` gives an estimate and bounds of ``nan``).
    alpha : float
        1 - confidence level.

    Returns
    -------
    Estimate
        ``k / n`` and the Wilson (1927) interval, which keeps its coverage near
        the nominal level for small n and proportions near 0 or 1, unlike the
        Wald interval (Brown, Cai & DasGupta 2001, Stat Sci 16:101).

    Raises
    ------
    ValueError
        When ``k`` is outside ``[0, n]``.
    """
    k_f, n_f = float(k), float(n)
    if n_f < 0 or k_f < 0 or k_f > n_f:
        raise ValueError(f"wilson_ci needs 0 <= k <= n; got k={k}, n={n}")
    method = "Wilson score interval"
    if n_f == 0:
        return Estimate(np.nan, np.nan, np.nan, 1 - alpha, method)
    z = _z(alpha)
    p = k_f / n_f
    denom = 1 + z**2 / n_f
    centre = (p + z**2 / (2 * n_f)) / denom
    half = z * np.sqrt(p * (1 - p) / n_f + z**2 / (4 * n_f**2)) / denom
    return Estimate(p, float(max(0.0, centre - half)), float(min(1.0, centre + half)), 1 - alpha, method)


def wilson_half_width(p: float, n: int | np.ndarray, *, alpha: float = 0.05) -> np.ndarray | float:
    """Half-width of the Wilson interval when a proportion ``p`` is observed in ``n`` trials.

    Used for planning: the precision with which a sensitivity of about ``p``
    can be estimated from ``n`` positives (Buderer 1996, Acad Emerg Med 3:895,
    with the Wilson instead of the Wald interval).

    Parameters
    ----------
    p : float
        Planning value of the proportion, in ``[0, 1]``.
    n : int or numpy.ndarray
        Number(s) of trials; ``n = 0`` gives ``inf``.
    alpha : float
        1 - confidence level.

    Returns
    -------
    float or numpy.ndarray
        ``(high - low) / 2`` of the Wilson interval, same shape as ``n``.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"planning proportion p must be in [0, 1]; got {p!r}")
    z = _z(alpha)
    n_arr = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = z * np.sqrt(p * (1 - p) / n_arr + z**2 / (4 * n_arr**2)) / (1 + z**2 / n_arr)
    half = np.where(n_arr > 0, half, np.inf)
    return float(half) if np.ndim(half) == 0 else half


def n_for_wilson_half_width(p: float, half_width: float, *, alpha: float = 0.05) -> int:
    """Smallest ``n`` whose Wilson interval around ``p`` has half-width <= ``half_width``.

    Parameters
    ----------
    p : float
        Planning value of the proportion.
    half_width : float
        Target half-width, in ``(0, 0.5]``.
    alpha : float
        1 - confidence level.

    Returns
    -------
    int
        E.g. 60 for ``p = 0.8, half_width = 0.10`` at 95 % (93 at ``p = 0.5``).
    """
    if not 0 < half_width <= 0.5:
        raise ValueError(f"half_width must be in (0, 0.5]; got {half_width!r}")
    z = _z(alpha)
    hi = max(1, int(np.ceil(z**2 / (4 * half_width**2))) + 2)  # worst case p = 0.5 bound
    while wilson_half_width(p, hi, alpha=alpha) > half_width:  # pragma: no cover - safety
        hi *= 2
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if wilson_half_width(p, mid, alpha=alpha) <= half_width:
            hi = mid
        else:
            lo = mid + 1
    return lo


# -- AUC ------------------------------------------------------------------------------


def _midranks(x: np.ndarray) -> np.ndarray:
    return _sps.rankdata(x, method="average")


def delong_auc(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong variance.

    Implements the structural-components estimator of DeLong, DeLong &
    Clarke-Pearson (1988, Biometrics 44:837) with the midrank computation of
    Sun & Xu (2014, IEEE Signal Process Lett 21:1389); ties count one half.

    Parameters
    ----------
    y : numpy.ndarray
        Shape ``(N,)`` binary labels (1 = positive).
    score : numpy.ndarray
        Shape ``(N,)`` scores, higher meaning more likely positive.

    Returns
    -------
    auc : float
        Equals ``sklearn.metrics.roc_auc_score(y, score)``.
    variance : float
        DeLong's variance of the AUC.

    Raises
    ------
    ValueError
        When ``y`` is not binary or one class is absent.
    """
    y = np.asarray(y)
    score = np.asarray(score, dtype=float)
    if y.shape != score.shape or y.ndim != 1:
        raise ValueError(f"y and score must be 1-d of equal length; got {y.shape} and {score.shape}")
    uniq = np.unique(y)
    if not set(uniq.tolist()) <= {0, 1}:
        raise ValueError(f"y must be binary (0/1); got values {uniq[:5].tolist()}")
    pos, neg = score[y == 1], score[y == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        raise ValueError(f"AUC needs both classes; got {m} positives and {n} negatives")
    r_all = _midranks(np.concatenate([pos, neg]))
    r_pos, r_neg = _midranks(pos), _midranks(neg)
    v10 = (r_all[:m] - r_pos) / n  # per positive: fraction of negatives ranked below
    v01 = 1.0 - (r_all[m:] - r_neg) / m  # per negative: fraction of positives ranked above
    auc = float(v10.mean())
    s10 = v10.var(ddof=1) if m > 1 else 0.0
    s01 = v01.var(ddof=1) if n > 1 else 0.0
    return auc, float(s10 / m + s01 / n)


def auc_ci(
    y: np.ndarray,
    score: np.ndarray,
    *,
    alpha: float = 0.05,
    transform: Literal["logit", "none"] = "logit",
) -> Estimate:
    """AUC with a DeLong confidence interval.

    Parameters
    ----------
    y : numpy.ndarray
        Shape ``(N,)`` binary labels.
    score : numpy.ndarray
        Shape ``(N,)`` scores.
    alpha : float
        1 - confidence level.
    transform : {'logit', 'none'}
        ``'logit'`` builds the Wald interval on the logit scale and maps it
        back, which keeps it inside (0, 1) and improves coverage near 1
        (Pepe 2003, sec. 5.2); ``'none'`` is the plain Wald interval clipped to
        [0, 1] (pROC's default).

    Returns
    -------
    Estimate
    """
    auc, var = delong_auc(y, score)
    z = _z(alpha)
    se = np.sqrt(var)
    if transform == "none":
        low, high = max(0.0, auc - z * se), min(1.0, auc + z * se)
        method = "DeLong variance, Wald interval"
    elif transform == "logit":
        if 0 < auc < 1 and se > 0:
            lg = np.log(auc / (1 - auc))
            se_l = se / (auc * (1 - auc))
            low, high = (float(_expit(lg - z * se_l)), float(_expit(lg + z * se_l)))
        else:
            low = high = auc
        method = "DeLong variance, Wald interval on the logit scale"
    else:
        raise ValueError(f"transform must be 'logit' or 'none'; got {transform!r}")
    return Estimate(auc, float(low), float(high), 1 - alpha, method)


# -- agreement ------------------------------------------------------------------------------


def _pair_table(a: np.ndarray, b: np.ndarray, n_classes: int | None) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"ratings must be 1-d of equal length; got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("Cohen's kappa needs at least one item rated by both raters; got none")
    k = int(max(a.max(), b.max()) + 1) if n_classes is None else n_classes
    if min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= k:
        raise ValueError(f"ratings must be class indices in [0, {k})")
    return np.bincount(a * k + b, minlength=k * k).reshape(k, k) / a.size


def cohen_kappa_ci(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_classes: int | None = None,
    alpha: float = 0.05,
) -> Estimate:
    """Cohen's kappa with a large-sample Wald interval.

    The standard error is the non-null asymptotic one of Fleiss, Cohen &
    Everitt (1969, Psychol Bull 72:323), eq. 13 (also Fleiss, Levin & Paik,
    *Statistical Methods for Rates and Proportions*, 3rd ed., eq. 18.12).

    Parameters
    ----------
    a, b : numpy.ndarray
        Shape ``(N,)`` class indices from each rater.
    n_classes : int, optional
        K.
    alpha : float
        1 - confidence level.

    Returns
    -------
    Estimate
        Kappa from ``sklearn.metrics.cohen_kappa_score`` (Cohen 1960,
        unweighted), except ``1.0`` with no interval when both raters use one
        and the same class for every item (chance agreement 1, where
        scikit-learn returns ``nan``); bounds clipped to ``[-1, 1]``.

    Raises
    ------
    ValueError
        When ``a`` and ``b`` differ in shape, are empty, or hold values
        outside ``[0, n_classes)``.
    """
    from sklearn.metrics import cohen_kappa_score

    p = _pair_table(a, b, n_classes)
    n = len(np.asarray(a))
    rows, cols = p.sum(1), p.sum(0)
    pe = float(rows @ cols)
    method = "Wald interval, Fleiss-Cohen-Everitt (1969) standard error"
    if pe >= 1:  # both raters always use the same single class: perfect agreement
        return Estimate(1.0, np.nan, np.nan, 1 - alpha, method)
    kappa = float(cohen_kappa_score(a, b, labels=np.arange(p.shape[0])))
    diag = np.diag(p)
    term_a = float(np.sum(diag * (1 - (rows + cols) * (1 - kappa)) ** 2))
    off = p.copy()
    np.fill_diagonal(off, 0.0)
    term_b = float((1 - kappa) ** 2 * np.sum(off * (cols[:, None] + rows[None, :]) ** 2))
    term_c = (kappa - pe * (1 - kappa)) ** 2
    var = max(term_a + term_b - term_c, 0.0) / (n * (1 - pe) ** 2)
    z = _z(alpha)
    se = np.sqrt(var)
    return Estimate(
        kappa, float(max(-1.0, kappa - z * se)), float(min(1.0, kappa + z * se)), 1 - alpha, method
    )


def ratings_to_counts(ratings: np.ndarray, n_classes: int) -> np.ndarray:
    """Turn an items x raters table into an items x classes count table.

    Parameters
    ----------
    ratings : numpy.ndarray
        Shape ``(N, M)`` float class indices, ``nan`` where a rater did not rate.
    n_classes : int
        K.

    Returns
    -------
    numpy.ndarray
        Shape ``(N, K)`` int64: how many raters put item i in class k.
    """
    r = np.asarray(ratings, dtype=float)
    if r.ndim != 2:
        raise ValueError(f"ratings must be (N, M); got shape {r.shape}")
    ok = ~np.isnan(r)
    vals = r[ok].astype(np.int64)
    if vals.size and (vals.min() < 0 or vals.max() >= n_classes or np.any(r[ok] != vals)):
        raise ValueError(f"ratings must be class indices in [0, {n_classes}) or nan")
    rows = np.nonzero(ok)[0]
    counts = np.zeros((r.shape[0], n_classes), dtype=np.int64)
    np.add.at(counts, (rows, vals), 1)
    return counts


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' (1971) kappa for many raters.

    Items may have different numbers of ratings: the per-item agreement is
    ``sum_k n_ik (n_ik - 1) / (n_i (n_i - 1))`` and the category proportions
    pool all ratings, the usual generalisation for unequal numbers of raters
    (Fleiss, Levin & Paik 2003, sec. 18.3). Items with fewer than two ratings
    carry no agreement information and are ignored. With equal numbers of
    raters this is exactly Fleiss (1971).

    Parameters
    ----------
    counts : numpy.ndarray
        Shape ``(N, K)``: raters assigning item i to class k.

    Returns
    -------
    float
        Kappa; ``nan`` when no item has two ratings; ``1.0`` when chance
        agreement is 1 and every item is unanimous.
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2:
        raise ValueError(f"counts must be (N, K); got shape {c.shape}")
    n_i = c.sum(1)
    keep = n_i >= 2
    if not keep.any():
        return float("nan")
    c, n_i = c[keep], n_i[keep]
    p_i = (np.sum(c * (c - 1), axis=1)) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = c.sum(0) / c.sum()
    p_e = float(np.sum(p_j**2))
    if p_e >= 1:
        return 1.0 if p_bar >= 1 else 0.0
    return float((p_bar - p_e) / (1 - p_e))


def fleiss_kappa_ci(
    counts: np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Estimate:
    """Fleiss' kappa with a percentile bootstrap interval over items.

    Items (not ratings) are resampled, the unit of independence (Efron &
    Tibshirani 1993); the large-sample variance of Fleiss, Nee & Landis (1979)
    holds only under the null of no agreement, so it is not used for intervals.

    Parameters
    ----------
    counts : numpy.ndarray
        Shape ``(N, K)`` (see :func:`fleiss_kappa`).
    n_boot : int
        Replicates.
    alpha : float
        1 - confidence level.
    seed : int
        Seed.

    Returns
    -------
    Estimate
    """
    c = np.asarray(counts)
    c = c[c.sum(1) >= 2]
    if len(c) == 0:
        return Estimate(np.nan, np.nan, np.nan, 1 - alpha, "no item with two ratings")
    return bootstrap_ci(fleiss_kappa, c, n_boot=n_boot, alpha=alpha, seed=seed)


#: Verbal bands of kappa: (lower bound, label), from the top.
_LANDIS_KOCH = ((0.81, "almost perfect"), (0.61, "substantial"), (0.41, "moderate"),
                (0.21, "fair"), (0.0, "slight"), (-np.inf, "poor"))
_MCHUGH = ((0.90, "almost perfect"), (0.80, "strong"), (0.60, "moderate"), (0.40, "weak"),
           (0.21, "minimal"), (-np.inf, "none"))


def interpret_kappa(kappa: float, *, scale: Literal["mchugh", "landis-koch"] = "mchugh") -> str:
    """Verbal band of a kappa value.

    Parameters
    ----------
    kappa : float
        The coefficient.
    scale : {'mchugh', 'landis-koch'}
        McHugh (2012, Biochem Med 22:276), stricter and meant for health
        data (below 0.60 "weak" or worse), or Landis & Koch (1977, Biometrics
        33:159).

    Returns
    -------
    str
        E.g. ``"weak"``; ``"not estimable"`` for ``nan``.
    """
    if not np.isfinite(kappa):
        return "not estimable"
    bands = _MCHUGH if scale == "mchugh" else _LANDIS_KOCH
    for lower, label in bands:
        if kappa >= lower:
            return label
    return bands[-1][1]  # pragma: no cover


# -- robust location and scale ----------------------------------------------------------


def robust_center_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and a robust standard deviation of ``values``.

    The scale is the normal-consistent median absolute deviation
    (``scipy.stats.median_abs_deviation(scale="normal")``, MAD / 0.6745;
    Rousseeuw & Croux 1993). When the MAD is zero (more than half the values
    equal) it falls back to ``sqrt(pi / 2)`` times the mean absolute deviation
    from the median (consistent with the standard deviation for normal data;
    Iglewicz & Hoaglin 1993), and is ``0`` only for a constant sample.

    Parameters
    ----------
    values : numpy.ndarray
        ``(M,)`` finite values, ``M >= 1``.

    Returns
    -------
    (float, float)
        Median and scale.
    """
    v = np.asarray(values, dtype=np.float64)
    med = float(np.median(v))
    mad = float(_sps.median_abs_deviation(v, scale="normal"))
    if mad > 0:
        return med, mad
    return med, float(np.sqrt(np.pi / 2) * np.abs(v - med).mean())
