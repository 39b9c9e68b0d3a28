"""Two-sample tests for data drift between a reference run and a new batch.

Pure functions of arrays and frames; the ``drift`` check composes them.

* :func:`classifier_two_sample_test` (C2ST; Lopez-Paz & Oquab, ICLR 2017): a
  linear classifier (Fisher's discriminant with a ridge, in numpy: hundreds of
  refits per test rule out a library estimator's per-fit overhead) tries to tell the two samples apart from their
  features; its cross-validated AUC is the effect size (0.5: indistinguishable) and
  a permutation of the sample labels gives the p-value.
* :func:`mmd_test`: maximum mean discrepancy with a Gaussian kernel whose width
  is the median pairwise distance (Gretton et al., JMLR 2012), permutation p-value.
* :func:`column_tests`: chi-square test of the category mix of each categorical
  column and Kolmogorov-Smirnov test of each numeric column (scipy), with
  effect sizes (Cramer's V; the KS statistic; the standardised mean difference).
* :func:`holm`: Holm's step-down adjustment of p-values (Holm, Scand J Stat 1979),
  which keeps the chance of any false alarm across all tests at ``alpha``.

Features are standardised and reduced by PCA (fitted on the pooled samples, no
labels involved) before the feature tests; p-values of permutation tests are
``(1 + #{T_perm >= T}) / (1 + n_perm)`` (Phipson & Smyth 2010), never 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _sps

__all__ = ["classifier_two_sample_test", "column_tests", "holm", "mmd_test", "reduce_features"]


def reduce_features(a: np.ndarray, b: np.ndarray, *, n_components: int = 32,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardise and PCA-reduce two samples of features with one pooled fit.

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(N, D)`` and ``(M, D)``.
    n_components : int
    seed : int

    Returns
    -------
    numpy.ndarray, numpy.ndarray
        ``(N, d)`` and ``(M, d)``, ``d = min(n_components, D, N + M - 1)``.
    """
    from sklearn.decomposition import PCA

    x = np.vstack([a, b]).astype(np.float64)
    mu, sd = x.mean(0), x.std(0)
    x = (x - mu) / np.where(sd > 1e-12, sd, 1.0)
    d = min(n_components, x.shape[1], x.shape[0] - 1)
    if d < x.shape[1]:
        x = PCA(n_components=d, random_state=seed).fit_transform(x)
    return x[: len(a)], x[len(a):]


def _fisher_scores(x: np.ndarray, z: np.ndarray, train: np.ndarray, test: np.ndarray,
                   ridge: float) -> np.ndarray:
    """Fisher's linear discriminant fitted on ``train`` rows, scores of ``test`` rows."""
    xa, xb = x[train][z[train] == 0], x[train][z[train] == 1]
    pooled = (np.cov(xa, rowvar=False) * (len(xa) - 1) + np.cov(xb, rowvar=False) * (len(xb) - 1)) \
        / max(len(xa) + len(xb) - 2, 1)
    pooled = np.atleast_2d(pooled)
    w = np.linalg.solve(pooled + ridge * np.eye(len(pooled)), xb.mean(0) - xa.mean(0))
    return x[test] @ w


def _cv_auc(x: np.ndarray, z: np.ndarray, folds: np.ndarray, ridge: float) -> float:
    from audit.metrics import auc_score

    score = np.empty(len(z))
    for f in np.unique(folds):
        test = folds == f
        score[test] = _fisher_scores(x, z, ~test, test, ridge)
    return auc_score(z, np.column_stack([-score, score]))


def classifier_two_sample_test(
    a: np.ndarray, b: np.ndarray, *, n_perm: int = 100, n_splits: int = 5, seed: int = 0,
    ridge: float = 1.0,
) -> dict[str, Any]:
    """C2ST: can a linear classifier tell ``b`` from ``a``? (Lopez-Paz & Oquab 2017)

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(N, d)`` and ``(M, d)`` features.
    n_perm : int
        Permutations of the sample labels.
    n_splits : int
        Cross-validation folds (stratified by sample).
    seed : int
    ridge : float
        Added to the pooled covariance's diagonal (features are standardised, so
        1.0 is a moderate shrinkage towards the nearest-mean classifier).

    Returns
    -------
    dict
        ``auc`` (cross-validated, 0.5 = no difference), ``p_value`` (permutation),
        ``n_perm``, ``method``.
    """
    x = np.vstack([a, b])
    z = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    rng = np.random.default_rng(seed)
    folds = np.empty(len(z), int)
    for label in (0, 1):  # stratified fold assignment
        idx = rng.permutation(np.flatnonzero(z == label))
        folds[idx] = np.arange(len(idx)) % n_splits
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # hundreds of small solves: BLAS threads only add overhead
        auc = _cv_auc(x, z, folds, ridge)
        null = np.array([_cv_auc(x, rng.permutation(z), folds, ridge) for _ in range(n_perm)])
    p = (1 + int(np.sum(null >= auc))) / (1 + n_perm)
    return {"auc": round(float(auc), 4), "p_value": round(p, 4), "n_perm": n_perm,
            "method": f"classifier two-sample test (ridge Fisher discriminant, {n_splits}-fold cross-validated "
            f"AUC; Lopez-Paz & Oquab 2017), {n_perm} label permutations"}


def mmd_test(a: np.ndarray, b: np.ndarray, *, n_perm: int = 200, seed: int = 0) -> dict[str, Any]:
    """Maximum mean discrepancy with a Gaussian kernel, permutation p-value (Gretton et al. 2012).

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(N, d)``, ``(M, d)``.
    n_perm : int
    seed : int

    Returns
    -------
    dict
        ``mmd2`` (biased V-statistic of the squared MMD), ``bandwidth`` (median
        heuristic), ``p_value``, ``n_perm``, ``method``.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _mmd(a, b, n_perm=n_perm, seed=seed)


def _mmd(a: np.ndarray, b: np.ndarray, *, n_perm: int, seed: int) -> dict[str, Any]:
    x = np.vstack([a, b]).astype(np.float64)
    sq = np.sum(x**2, 1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0, None)
    med = float(np.median(d2[np.triu_indices(len(x), 1)]))
    bw = np.sqrt(med / 2) if med > 0 else 1.0
    k = np.exp(-d2 / (2 * bw**2))
    n, m = len(a), len(b)

    def stats(u: np.ndarray) -> np.ndarray:
        """MMD^2 for the columns of ``u`` (1 = first sample), all at once."""
        v = 1.0 - u
        ku = k @ u
        kv = k @ v
        return (np.sum(u * ku, 0) / n**2 + np.sum(v * kv, 0) / m**2
                - 2 * np.sum(u * kv, 0) / (n * m))

    z = np.r_[np.ones(n), np.zeros(m)]
    t = float(stats(z[:, None])[0])
    rng = np.random.default_rng(seed)
    null = stats(np.column_stack([rng.permutation(z) for _ in range(n_perm)]))
    p = (1 + int(np.sum(null >= t))) / (1 + n_perm)
    return {"mmd2": round(t, 6), "bandwidth": round(float(bw), 4), "p_value": round(p, 4),
            "n_perm": n_perm, "method": "MMD^2 (biased), Gaussian kernel with median-heuristic "
            f"width (Gretton et al. 2012), {n_perm} permutations"}


def column_tests(ref: pd.DataFrame, new: pd.DataFrame, columns: list[str], *,
                 max_levels: int = 50) -> list[dict[str, Any]]:
    """Per column: chi-square of the category mix, or KS of a numeric distribution.

    Parameters
    ----------
    ref, new : pandas.DataFrame
        The two samples (``columns`` present in both).
    columns : list of str
    max_levels : int
        Categorical columns with more levels are left out (identifiers, free text).

    Returns
    -------
    list of dict
        ``column``, ``test`` ('chi-square' / 'KS'), ``statistic``, ``p_value``,
        ``effect`` (Cramer's V, or the KS statistic), ``effect_name``; numeric
        columns add ``smd`` (standardised mean difference, new minus reference) and
        ``ref_mean`` / ``new_mean``; categorical ones the two shares per level.
    """
    out: list[dict[str, Any]] = []
    for col in columns:
        a, b = ref[col], new[col]
        num_a, num_b = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
        numeric = (a.dtype.kind in "fiub" or num_a.notna().mean() > 0.95) and num_b.notna().any()
        if numeric:
            x, y = num_a.dropna().to_numpy(float), num_b.dropna().to_numpy(float)
            if len(x) < 2 or len(y) < 2 or (np.ptp(x) == 0 and np.ptp(y) == 0 and x[0] == y[0]):
                continue
            ks = _sps.ks_2samp(x, y)
            pooled = np.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
            smd = (y.mean() - x.mean()) / pooled if pooled > 0 else 0.0
            out.append({"column": col, "test": "KS", "statistic": round(float(ks.statistic), 4),
                        "p_value": float(ks.pvalue), "effect": round(float(ks.statistic), 4),
                        "effect_name": "KS statistic", "smd": round(float(smd), 3),
                        "ref_mean": round(float(x.mean()), 4), "new_mean": round(float(y.mean()), 4)})
            continue
        sa, sb = a.fillna("(missing)").astype(str), b.fillna("(missing)").astype(str)
        levels = sorted(set(sa) | set(sb))
        if len(levels) < 2 or len(levels) > max_levels:
            continue
        table = np.array([[int((sa == lv).sum()) for lv in levels],
                          [int((sb == lv).sum()) for lv in levels]])
        chi2, p, dof, _ = _sps.chi2_contingency(table)
        v = np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1)))
        out.append({"column": col, "test": "chi-square", "statistic": round(float(chi2), 3),
                    "p_value": float(p), "dof": int(dof), "effect": round(float(v), 4),
                    "effect_name": "Cramer's V",
                    "shares": {lv: [round(table[0, i] / table[0].sum(), 4),
                                    round(table[1, i] / table[1].sum(), 4)]
                               for i, lv in enumerate(levels)}})
    return out


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (same order), capped at 1 (Holm 1979)."""
    p = np.asarray(p_values, float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return [float(v) for v in out]
