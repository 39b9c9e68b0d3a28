"""overfitting: planted memorisation, under-training, overconfidence and fold spread are
found; regularised controls are not flagged; a known learning curve is recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from audit.calibration import _logistic_fit, _slope, calibration_slope, calibration_slope_intercept
from audit.checks.overfitting import (
    LC_FLAT,
    LC_HELP,
    OverfittingConfig,
    check_overfitting,
    fold_heterogeneity,
    training_length,
)
from audit.context import AuditContext
from audit.learning_curve import fit_inverse_power_law, inverse_power_law
from audit.stats import Estimate

FAST = OverfittingConfig(n_boot=100)
N, F = 600, 5


def _probs(logit: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-logit))
    return np.c_[1 - p, p].astype(np.float32)


def _sim(in_sep: float, oof_sep: float = 1.0, seed: int = 0, fold_sep: list[float] | None = None):  # type: ignore[no-untyped-def]
    """Labels, folds, OOF probs (separation ``oof_sep``), in-sample probs (``in_sep``)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(N) < 0.4).astype(np.int64)
    folds = np.arange(N) % F
    sep = np.full(N, oof_sep) if fold_sep is None else np.asarray(fold_sep)[folds]
    oof = _probs(sep * (2 * y - 1) + rng.normal(0, 1.2, N))
    ins = np.full((N, F, 2), np.nan, np.float32)
    for k in range(F):
        m = folds != k
        ins[m, k] = _probs(in_sep * (2 * y[m] - 1) + rng.normal(0, 1.2, m.sum()))
    return y, folds, oof, ins


def _ctx(y, folds, oof, **evidence):  # type: ignore[no-untyped-def]
    man = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(N)],
            "label": y,
            "patient_key": [f"p{i // 2}" for i in range(N)],
        }
    )
    return AuditContext.from_arrays(man, ["neg", "pos"], pred_probs=oof, folds=folds, **evidence)


def _history(best: list[int], epochs: int = 10, stopped: bool = False) -> dict:  # type: ignore[type-arg]
    return {
        "mode": "finetune",
        "folds": [
            {
                "fold": k,
                "best_epoch": b,
                "stopped_early": stopped,
                "epochs": [
                    {"epoch": e, "inner_val_loss": 0.7 - 0.02 * min(e, b) + 0.01 * max(0, e - b)}
                    for e in range(1, epochs + 1)
                ],
            }
            for k, b in enumerate(best)
        ],
    }


def _by_title(findings, word):  # type: ignore[no-untyped-def]
    return [f for f in findings if word in f.title]


def test_memorising_model_is_flagged_in_plain_words() -> None:
    y, folds, oof, ins = _sim(in_sep=6.0)  # near-perfect on its training images
    found = check_overfitting(_ctx(y, folds, oof, in_sample_probs=ins), FAST)
    gap = _by_title(found, "In-sample AUC")[0]
    assert gap.severity == "warning"
    assert "it has memorised part of the training set" in gap.message
    assert "on images it trained on and" in gap.message
    ev = gap.evidence
    assert ev["gap"]["ci_low"] > 0.05 and ev["in_sample_auc_mean"] > 0.98
    assert len(ev["folds"]) == F and all(f["gap"]["estimate"] > 0.05 for f in ev["folds"])
    assert "class_balance_and_size" in ev["sample_size_rules"]  # referenced, not duplicated


def test_regularised_model_is_not_flagged() -> None:
    y, folds, oof, ins = _sim(in_sep=1.0)  # scores its training images like new ones
    found = check_overfitting(_ctx(y, folds, oof, in_sample_probs=ins), FAST)
    gap = _by_title(found, "In-sample AUC")[0]
    assert gap.severity == "pass" and "no sign that it memorised" in gap.message
    assert gap.evidence["gap"]["ci_low"] < 0.02 < gap.evidence["gap"]["ci_high"] + 0.02
    assert not _by_title(found, "vary more than chance")


def test_gap_falls_back_to_history_points_without_in_sample_probs() -> None:
    y, folds, oof, _ = _sim(in_sep=1.0)
    hist = _history([5] * F)
    for k, f in enumerate(hist["folds"]):
        f.update(in_sample_auc=0.99 - 0.001 * k, oof_auc=0.80 + 0.01 * k)
    gap = _by_title(check_overfitting(_ctx(y, folds, oof, history=hist), FAST), "In-sample")[0]
    assert gap.severity == "warning" and "points only" in gap.evidence["method"]


def test_undertraining_is_a_finding_and_early_stopping_is_not() -> None:
    y, folds, oof, _ = _sim(in_sep=1.0)
    edge = check_overfitting(_ctx(y, folds, oof, history=_history([10, 10, 10, 9, 10])), FAST)
    under = _by_title(edge, "still improving")[0]
    assert under.severity == "warning" and "4 of 5 folds" in under.title
    assert "--epochs 20" in under.recommendation
    ok = check_overfitting(
        _ctx(y, folds, oof, history=_history([6, 7, 5, 6, 7], stopped=True)), FAST
    )
    length = _by_title(ok, "Training length")[0]
    assert length.severity == "pass" and not _by_title(ok, "still improving")
    tl = training_length(_history([6, 7, 5, 6, 7], stopped=True))
    assert tl is not None and tl["folds"][0]["epochs_past_best"] == 4
    assert tl["folds"][0]["inner_val_loss_rise"] == pytest.approx(0.04)
    assert training_length({"mode": "linear-probe", "folds": [{"epochs": []}]}) is None
    # the last epoch best by a hair, the loss flat: a decayed learning rate, not under-training
    flat = {"folds": [{"fold": k, "best_epoch": 10, "stopped_early": False, "epochs": [
        {"epoch": e, "inner_val_loss": 0.7 - 0.05 * min(e, 5) - 0.0005 * e} for e in range(1, 11)
    ]} for k in range(F)]}  # fmt: skip
    calm = check_overfitting(_ctx(y, folds, oof, history=flat), FAST)
    length = _by_title(calm, "Training length")[0]
    assert length.severity == "pass" and "not under-training" in length.message
    assert training_length(flat)["n_at_edge"] == F  # type: ignore[index]


def test_overconfident_predictions_give_a_low_calibration_slope() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(N) < 0.4).astype(np.int64)
    true_logit = 1.2 * (2 * y - 1) + rng.normal(0, 1.2, N)
    y = (rng.random(N) < 1 / (1 + np.exp(-true_logit))).astype(np.int64)  # calibrated truth
    folds = np.arange(N) % F
    over = calibration_slope(y, _probs(3 * true_logit), n_boot=100)
    good = calibration_slope(y, _probs(true_logit), n_boot=100)
    assert over.estimate == pytest.approx(1 / 3, abs=0.1) and over.high < 0.8
    assert good.low < 1 < good.high
    found = check_overfitting(_ctx(y, folds, _probs(3 * true_logit)), FAST)
    slope = _by_title(found, "Calibration slope")[0]
    assert slope.severity == "warning" and "overconfident" in slope.message
    calm = _by_title(
        check_overfitting(_ctx(y, folds, _probs(true_logit)), FAST), "Calibration slope"
    )[0]
    assert calm.severity == "pass"


def test_newton_slope_matches_scikit_learn() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 2, 500)
    y = (rng.random(500) < 1 / (1 + np.exp(-(0.3 + 0.7 * x)))).astype(int)
    ref = LogisticRegression(C=np.inf, max_iter=1000).fit(x[:, None], y).coef_[0, 0]
    assert _slope(y, x) == pytest.approx(ref, rel=1e-4)
    assert np.isnan(_slope(np.zeros(10, int), np.arange(10.0)))
    # the intercept with the log-odds as offset: a 1-parameter GLM, checked by its score
    # equation (mean predicted risk equals the observed rate at the optimum)
    a, b = _logistic_fit(x, y, offset=True)
    assert b == 1.0
    assert np.mean(1 / (1 + np.exp(-(a + x)))) == pytest.approx(y.mean(), abs=1e-8)
    p1 = 1 / (1 + np.exp(-x))
    slope, intercept = calibration_slope_intercept(y, np.column_stack([1 - p1, p1]))
    assert slope == pytest.approx(ref, rel=1e-4) and intercept == pytest.approx(a, abs=1e-6)


def test_fold_spread_beyond_sampling_is_flagged() -> None:
    y, folds, oof, ins = _sim(in_sep=1.0, fold_sep=[3.0, 3.0, 3.0, 3.0, 0.2])
    found = check_overfitting(_ctx(y, folds, oof, in_sample_probs=ins), FAST)
    spread = _by_title(found, "vary more than chance")[0]
    assert spread.severity == "warning" and spread.evidence["p_value"] < 0.01
    same = fold_heterogeneity([Estimate(0.8, 0.75, 0.85)] * 5)
    assert same["p_value"] == pytest.approx(1.0) and same["i2"] == 0.0


def _curve(a: float, b: float, c: float, noise: float, seed: int = 0) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    pts = []
    for frac in (0.25, 0.5, 0.75, 1.0):
        for fold in range(F):
            n = round(frac * 480) + int(rng.integers(-4, 5))
            auc = float(inverse_power_law(np.array([n]), a, b, c)[0] + rng.normal(0, noise))
            pts.append({"fraction": frac, "fold": fold, "n_train": n, "auc": auc})
    return {"points": pts}


def test_inverse_power_law_with_known_parameters_is_recovered() -> None:
    a, b, c = 0.93, 2.5, 0.6
    curve = _curve(a, b, c, noise=0.002)
    n = np.array([p["n_train"] for p in curve["points"]], float)
    y = np.array([p["auc"] for p in curve["points"]])
    fit = fit_inverse_power_law(n, y, n_boot=200)
    assert fit.a == pytest.approx(a, abs=0.02) and fit.c == pytest.approx(c, abs=0.15)
    truth_2x = float(inverse_power_law(np.array([960.0]), a, b, c)[0])
    pred = fit.predict(960)
    assert pred.low <= truth_2x <= pred.high and abs(pred.estimate - truth_2x) < 0.01
    # extrapolation from the first three fractions to the full size
    first = n < 400
    part = fit_inverse_power_law(n[first], y[first], n_boot=200)
    at_full = float(inverse_power_law(np.array([480.0]), a, b, c)[0])
    assert abs(part.predict(480).estimate - at_full) < 0.01
    with pytest.raises(ValueError, match="at least 4 finite points"):
        fit_inverse_power_law(np.array([1.0, 2.0]), np.array([0.6, 0.7]))


def test_learning_curve_finding_says_whether_more_data_would_help() -> None:
    y, folds, oof, _ = _sim(in_sep=1.0)
    rising = check_overfitting(
        _ctx(y, folds, oof, learning_curve=_curve(0.95, 4.0, 0.5, 0.003)), FAST
    )
    lc = _by_title(rising, "Learning curve")[0]
    assert lc.title.endswith(LC_HELP) and lc.evidence["gain_at_2x"]["ci_low"] > 0.01
    assert "with twice the data" in lc.message
    flat = check_overfitting(
        _ctx(y, folds, oof, learning_curve=_curve(0.85, 50.0, 1.5, 0.002)), FAST
    )
    assert _by_title(flat, "Learning curve")[0].title.endswith(LC_FLAT)
