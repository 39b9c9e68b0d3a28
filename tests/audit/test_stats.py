"""audit.stats against reference implementations and textbook values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import median_abs_deviation, rankdata
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from audit.stats import (
    Estimate,
    auc_ci,
    bootstrap_category_totals,
    bootstrap_ci,
    cohen_kappa_ci,
    delong_auc,
    fleiss_kappa,
    fleiss_kappa_ci,
    interpret_kappa,
    n_for_wilson_half_width,
    ratings_to_counts,
    robust_center_scale,
    wilson_ci,
    wilson_half_width,
)

#: Fleiss (1971) worked example as reproduced in most textbooks: 10 subjects,
#: 14 raters, 5 categories; kappa = 0.210.
FLEISS_EXAMPLE = np.array(
    [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
     [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
)


def _scores(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(y + rng.normal(0, 1.2, n), 1)  # rounded: many ties
    return y, s


def test_delong_auc_equals_sklearn_with_ties() -> None:
    y, s = _scores()
    auc, var = delong_auc(y, s)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert var > 0


def test_delong_variance_matches_bootstrap() -> None:
    y, s = _scores(400, seed=1)
    _, var = delong_auc(y, s)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(y), (1500, len(y)))
    yy, ss = y[idx], s[idx]
    ranks = rankdata(ss, axis=1)  # AUC = Mann-Whitney U / (m n), all replicates at once
    m = (yy == 1).sum(1)
    reps = ((ranks * (yy == 1)).sum(1) - m * (m + 1) / 2) / (m * (len(y) - m))
    assert np.sqrt(var) == pytest.approx(np.std(reps), rel=0.15)


def test_auc_ci_contains_estimate_and_transforms_differ() -> None:
    y, s = _scores()
    logit = auc_ci(y, s)
    wald = auc_ci(y, s, transform="none")
    for est in (logit, wald):
        assert est.low < est.estimate < est.high
        assert 0 <= est.low and est.high <= 1
    assert logit.low != wald.low
    assert "DeLong" in logit.method


def test_auc_ci_rejects_one_class_and_bad_transform() -> None:
    with pytest.raises(ValueError, match="both classes"):
        auc_ci(np.ones(5), np.arange(5.0))
    y, s = _scores()
    with pytest.raises(ValueError, match="transform"):
        auc_ci(y, s, transform="probit")  # type: ignore[arg-type]


def test_wilson_known_values_and_edges() -> None:
    est = wilson_ci(8, 10)
    assert est.estimate == 0.8
    assert (est.low, est.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    zero = wilson_ci(0, 20)
    assert zero.low == 0 and 0 < zero.high < 0.2
    empty = wilson_ci(0, 0)
    assert np.isnan(empty.estimate)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_ci(5, 3)


def test_wilson_half_width_and_required_n_agree() -> None:
    n = n_for_wilson_half_width(0.8, 0.10)
    assert n == 60
    assert wilson_half_width(0.8, n) <= 0.10 < wilson_half_width(0.8, n - 1)
    assert n_for_wilson_half_width(0.5, 0.10) > n  # worst case at p = 0.5
    est = wilson_ci(48, 60)
    assert (est.high - est.low) / 2 == pytest.approx(wilson_half_width(0.8, 60))
    assert np.isinf(wilson_half_width(0.8, 0))


def test_cohen_kappa_is_sklearns_and_ci_matches_bootstrap() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 3, 250)
    b = np.where(rng.random(250) < 0.7, a, rng.integers(0, 3, 250))
    est = cohen_kappa_ci(a, b)
    assert est.estimate == cohen_kappa_score(a, b)
    # a class neither rater used changes nothing
    assert cohen_kappa_ci(a, b, n_classes=5).estimate == pytest.approx(est.estimate, abs=1e-12)
    boot = bootstrap_ci(cohen_kappa_score, a, b, n_boot=1500, seed=1)
    se_fce = (est.high - est.low) / (2 * 1.959964)
    se_boot = (boot.high - boot.low) / (2 * 1.959964)
    assert se_fce == pytest.approx(se_boot, rel=0.2)
    assert est.low < est.estimate < est.high


def test_cohen_kappa_degenerate() -> None:
    # one class for every item by both raters: perfect agreement (scikit-learn says nan)
    est = cohen_kappa_ci(np.zeros(5, int), np.zeros(5, int))
    assert est.estimate == 1.0 and np.isnan(est.low) and np.isnan(est.high)
    with pytest.raises(ValueError, match="at least one item"):
        cohen_kappa_ci(np.array([], int), np.array([], int))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        cohen_kappa_ci(np.array([0, 1, 2]), np.array([0, 1, 1]), n_classes=2)


def test_robust_center_scale_is_scipys_normal_mad() -> None:
    v = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    med, s = robust_center_scale(v)
    assert med == 3.0 and s == median_abs_deviation(v, scale="normal")
    assert s == pytest.approx(1.4826, rel=1e-4)
    med, s = robust_center_scale(np.array([0.0] * 8 + [1.0, 3.0]))
    assert med == 0.0 and s == pytest.approx(np.sqrt(np.pi / 2) * 0.4)  # MAD 0: mean deviation
    assert robust_center_scale(np.ones(4)) == (1.0, 0.0)


def test_fleiss_kappa_textbook_example() -> None:
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(0.2099, abs=1e-4)
    est = fleiss_kappa_ci(FLEISS_EXAMPLE, n_boot=300)
    assert est.low < 0.21 < est.high


def test_fleiss_kappa_two_raters_is_scotts_pi() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 3, 200)
    b = np.where(rng.random(200) < 0.6, a, rng.integers(0, 3, 200))
    po = np.mean(a == b)
    pooled = np.bincount(np.r_[a, b], minlength=3) / 400
    scott = (po - np.sum(pooled**2)) / (1 - np.sum(pooled**2))
    counts = ratings_to_counts(np.c_[a, b].astype(float), 3)
    assert fleiss_kappa(counts) == pytest.approx(scott, abs=1e-12)


def test_ratings_to_counts_handles_missing_and_unequal_raters() -> None:
    r = np.array([[0, 0, np.nan], [1, np.nan, np.nan], [1, 0, 1]])
    counts = ratings_to_counts(r, 2)
    assert counts.tolist() == [[2, 0], [0, 1], [1, 2]]
    # the single-rating item carries no agreement information
    assert fleiss_kappa(counts) == pytest.approx(fleiss_kappa(counts[[0, 2]]))
    with pytest.raises(ValueError, match="class indices"):
        ratings_to_counts(np.array([[0, 2.0]]), 2)


def test_bootstrap_ci_mean_and_cluster_widening() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 400)
    est = bootstrap_ci(np.mean, x, n_boot=800)
    half = (est.high - est.low) / 2
    assert half == pytest.approx(1.96 * x.std() / 20, rel=0.15)
    # 40 clusters of 10 identical values: the cluster bootstrap is much wider
    clustered = np.repeat(rng.normal(0, 1, 40), 10)
    groups = np.repeat(np.arange(40), 10)
    naive = bootstrap_ci(np.mean, clustered, n_boot=500)
    cluster = bootstrap_ci(np.mean, clustered, n_boot=500, groups=groups)
    assert (cluster.high - cluster.low) > 2 * (naive.high - naive.low)
    assert "clusters" in cluster.method


def test_bootstrap_ci_errors() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_ci(np.mean, np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(np.mean, np.zeros(3), n_boot=0)


def test_bootstrap_category_totals_rows_and_clusters() -> None:
    rng = np.random.default_rng(6)
    cats = rng.integers(0, 5, 1000)
    rows = bootstrap_category_totals(cats, 5, n_boot=3000, seed=1)
    assert rows.shape == (3000, 5)
    assert (rows.sum(1) == 1000).all()
    assert rows.mean(0) == pytest.approx(np.bincount(cats), rel=0.02)
    groups = np.repeat(np.arange(500), 2)
    clus = bootstrap_category_totals(cats, 5, groups=groups, n_boot=3000, seed=1)
    brute = []
    for _ in range(3000):
        pick = rng.integers(0, 500, 500)
        idx = np.c_[2 * pick, 2 * pick + 1].ravel()
        brute.append(np.bincount(cats[idx], minlength=5))
    assert clus.std(0) == pytest.approx(np.std(brute, axis=0), rel=0.1)
    assert clus.mean(0) == pytest.approx(np.mean(brute, axis=0), rel=0.02)


def test_bootstrap_category_totals_identical_clusters_move_together() -> None:
    # every patient has two images of the same category: totals stay even
    cats = np.repeat(np.arange(4), 50)
    groups = np.repeat(np.arange(100), 2)
    reps = bootstrap_category_totals(cats, 4, groups=groups, n_boot=200)
    assert (reps % 2 == 0).all()
    with pytest.raises(ValueError, match="categories"):
        bootstrap_category_totals(np.array([0, 7]), 3)


def test_interpret_kappa_bands() -> None:
    assert interpret_kappa(0.55) == "weak"
    assert interpret_kappa(0.65) == "moderate"
    assert interpret_kappa(0.85) == "strong"
    assert interpret_kappa(0.55, scale="landis-koch") == "moderate"
    assert interpret_kappa(float("nan")) == "not estimable"


def test_estimate_to_dict_is_json_ready() -> None:
    d = Estimate(0.5, float("nan"), 0.7, 0.95, "x").to_dict()
    assert d == {"estimate": 0.5, "ci_low": None, "ci_high": 0.7, "level": 0.95, "method": "x"}


def test_bootstrap_replicates_match_bootstrap_ci_resamples() -> None:
    from audit.stats import bootstrap_ci, bootstrap_replicates

    rng = np.random.default_rng(5)
    x = rng.normal(size=60)
    groups = np.repeat(np.arange(20), 3)
    point, reps = bootstrap_replicates(lambda a: np.array([a.mean(), a.max()]), x, n_boot=200,
                                       seed=3, groups=groups)
    ci = bootstrap_ci(np.mean, x, n_boot=200, seed=3, groups=groups)
    assert reps.shape == (200, 2) and point[0] == pytest.approx(x.mean())
    assert np.quantile(reps[:, 0], [0.025, 0.975]) == pytest.approx([ci.low, ci.high])
