"""subgroup_performance: a site where the model is worse is flagged; small groups are labelled."""

from __future__ import annotations

import numpy as np

from audit.checks.subgroup_performance import (
    SPEC,
    SubgroupPerformanceConfig,
    check_subgroup_performance,
    subgroup_table,
)
from tests.audit.checks.shortcut_sim import context, shortcut_data

FAST = SubgroupPerformanceConfig(n_boot=200)
KEYS = {
    "column",
    "level",
    "n",
    "prevalence",
    "auc",
    "sensitivity",
    "specificity",
    "auc_gap",
    "too_small",
    "q_value",
}


def test_worse_site_is_flagged() -> None:
    data = shortcut_data(planted=False, n=1600, seed=8)
    probs = data["pred_probs"].copy()
    rng = np.random.default_rng(0)
    c = data["site"] == 2
    noisy = 1 / (1 + np.exp(-rng.normal(-1.2, 1.0, c.sum())))  # no signal at site C
    probs[c, 1], probs[c, 0] = noisy, 1 - noisy
    [f] = check_subgroup_performance(context(data, pred_probs=probs), FAST)
    assert f.severity in ("warning", "critical")
    assert "site = 'site-c'" in f.title
    groups = f.evidence["groups"]
    assert all(KEYS <= set(g) for g in groups)
    worst = next(g for g in groups if g["level"] == "site-c" and g["column"] == "site")
    assert worst["flagged"] and worst["auc_gap"]["ci_high"] < 0
    assert worst["sensitivity"]["method"] and worst["prevalence"]["ci_low"] is not None
    for g in groups:
        if g["column"] in ("sex", "view", "age_band"):
            assert not g["flagged"]


def test_clean_control_passes_and_small_groups_are_labelled() -> None:
    data = shortcut_data(planted=False, seed=9)
    man = data["manifest"].copy()
    man["scanner"] = np.where(np.arange(len(man)) < 6, "rare", "common")
    man.loc[:5, "label"] = 1
    man.loc[:5, "label_name"] = "nodule"
    probs = data["pred_probs"].copy()
    probs[:6] = [[0.99, 0.01]] * 6  # terribly wrong, but only 3 patients
    ctx = context({**data, "manifest": man}, pred_probs=probs)
    [f] = check_subgroup_performance(ctx, FAST)
    assert f.severity == "pass"
    rare = next(g for g in f.evidence["groups"] if g["level"] == "rare")
    assert rare["too_small"] and rare["auc"] is None and not rare["flagged"]
    assert "too small" in f.message
    table = subgroup_table(ctx, FAST)
    assert {"column", "level", "auc", "too_small"} <= set(table.columns)
    assert SPEC.model_based


def test_no_gap_is_judged_for_a_model_that_does_not_discriminate() -> None:
    data = shortcut_data(planted=False, n=1600, seed=8)
    y = data["manifest"]["label"].to_numpy()
    rng = np.random.default_rng(1)
    score = rng.uniform(size=len(y))  # no signal overall ...
    c = data["site"] == 2
    score[c] = np.where(y[c] == 1, 0.2, 0.8) + rng.normal(0, 0.1, c.sum())  # ... inverted at site C
    rest = ~c
    score[rest] = np.where(y[rest] == 1, 0.55, 0.45) + rng.normal(0, 0.3, rest.sum())
    probs = np.column_stack([1 - np.clip(score, 0, 1), np.clip(score, 0, 1)])
    ctx = context(data, pred_probs=probs)
    [f] = check_subgroup_performance(ctx, FAST)
    overall = f.evidence["overall"]
    assert overall["auc"]["ci_low"] <= 0.5 and overall["discriminates"] is False
    assert f.severity == "pass" and "not judged" in f.message
    site_c = next(g for g in f.evidence["groups"] if g["level"] == "site-c")
    assert site_c["q_value"] < 0.05 and not site_c["flagged"]  # significant, yet not judged
