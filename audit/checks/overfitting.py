"""Check ``overfitting``: has the model memorised its training images, or not learnt enough?

Small medical data sets are where models memorise. From the run's predictions
and training history this check reports, in plain words with numbers:

* **in-sample vs out-of-fold AUC**, per fold and overall, and the gap with its
  95 % CI: each fold's model scored on the images it was fitted on
  (``train/in_sample_probs.npy``) against the same model on its out-of-fold
  images; overall, the mean of the folds' gaps. Intervals are percentile
  bootstraps over patients (the folds' training sets overlap, and images of one
  patient are not independent);
* **fold-to-fold spread** of the out-of-fold AUC: Cochran's Q test of
  heterogeneity on the folds' AUCs and standard errors (Cochran 1954), with
  I² (Higgins & Thompson 2002): more spread than sampling explains means the
  model's quality depends on which patients it was trained on;
* **training length** from the inner-validation curves (``train/history.json``):
  how many epochs training ran past the best one, and whether the selected epoch
  sits at the end of the schedule (the model was still improving: under-training
  is a finding too);
* **calibration slope** of the out-of-fold predictions (logistic recalibration,
  Cox 1958; Van Calster et al. 2019, BMC Med 17:230): below 1, predictions are
  too extreme, the classic sign of an overfitted model;
* **learning curve** (``train/learning_curve.json``, written by
  ``medaudit train --learning-curve``): an inverse power law fitted to the
  out-of-fold AUC at fractions of the training data (:mod:`audit.learning_curve`,
  Figueroa et al. 2012), extrapolated to twice the data: "more data would likely
  help" or "the curve has flattened".

How many images a model of this kind *should* have is the sample-size part of
``class_balance_and_size`` (Riley et al. 2020); this check refers to it rather
than repeating it.

Not ``model_based``: this check is about the model itself; the model-quality rule
(:mod:`audit.model_quality`) is for findings *about the data* that rest on the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from audit.calibration import calibration_slope
from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.metrics import auc_score
from audit.stats import Estimate, bootstrap_replicates, delong_auc, finite_or_none
from audit.validation import check_pred_probs

__all__ = [
    "OverfittingConfig",
    "check_overfitting",
    "fold_heterogeneity",
    "in_sample_gap",
    "learning_curve_outlook",
    "training_length",
]

NAME = "overfitting"
_REFS = ["CLAIM:model", "CLAIM:evaluation", "TRIPOD+AI:analysis", "TRIPOD+AI:sample-size"]
_Z = 1.959963984540054

TITLE_GAP = "In-sample AUC {ins:.2f} vs out-of-fold {oof:.2f} (gap {gap:+.2f}, 95% CI {lo:+.2f} to {hi:+.2f})"
MSG_MEMORISED = (
    "The model scores {ins:.2f} on images it trained on and {oof:.2f} on images it has not "
    "seen (AUC; gap {gap:.2f}, 95% CI {lo:.2f} to {hi:.2f}): it has memorised part of the "
    "training set. Its out-of-fold score is the one to report; the in-sample one is optimistic."
)
MSG_GAP = (
    "The model scores {ins:.2f} on images it trained on and {oof:.2f} on images it has not "
    "seen (AUC; gap {gap:.2f}, 95% CI {lo:.2f} to {hi:.2f}): it fits its training images "
    "noticeably better than new ones."
)
MSG_NO_GAP = (
    "The model scores {ins:.2f} on images it trained on and {oof:.2f} on images it has not "
    "seen (AUC; gap {gap:.2f}, 95% CI {lo:.2f} to {hi:.2f}): no sign that it memorised its "
    "training images."
)
REC_GAP = (
    "Regularise (augmentation, mixup, weight decay, fewer epochs, a smaller model or a "
    "pretrained backbone) or add data; report the out-of-fold AUC, never the in-sample one. "
    "Whether the data set is large enough for this model is in the class_balance_and_size "
    "finding (Riley et al. 2020 sample-size rules)."
)
TITLE_SPREAD = "Fold AUCs vary more than chance explains ({lo:.2f} to {hi:.2f})"
MSG_SPREAD = (
    "The out-of-fold AUC ranged from {lo:.2f} to {hi:.2f} across the {k} folds; sampling alone "
    "would rarely spread them this much (Cochran's Q = {q:.1f}, p = {p:.3g}, I² = {i2:.0%}). "
    "How good the model is depends on which patients it was trained on: it is unstable, or "
    "some patients differ from the rest."
)
REC_SPREAD = (
    "Look at what the weakest fold's patients have in common (site, scanner, subgroup); "
    "consider more data, a simpler model or several models per fold (--models-per-fold)."
)
TITLE_UNDERTRAINED = "Training stopped while the model was still improving ({n} of {k} folds)"
MSG_UNDERTRAINED = (
    "In {n} of {k} folds the best inner-validation epoch was the last one trained and the "
    "inner-validation loss was still falling over the last quarter of the epochs ({epochs}): "
    "the model was still improving when the schedule ended, so it is probably under-trained, "
    "and every finding that rests on it is weaker than it could be."
)
MSG_FLAT_EDGE = (
    " In {n} fold(s) the last epoch was the best by a small margin, the loss having flattened: "
    "that is the end of a decaying learning rate, not under-training."
)
REC_UNDERTRAINED = "Train for more epochs (e.g. --epochs {suggest}) and audit again."
TITLE_LENGTH_OK = "Training length: best epoch inside the schedule in {n} of {k} folds"
MSG_LENGTH_OK = (
    "In {n} of {k} folds the best inner-validation epoch came before the end of training "
    "(on average {past:.1f} epochs before the last one trained); the best weights were kept, "
    "so training long enough did not cost accuracy."
)
TITLE_SLOPE = "Calibration slope {slope:.2f} (95% CI {lo:.2f} to {hi:.2f})"
MSG_SLOPE_LOW = (
    "The calibration slope of the out-of-fold predictions is {slope:.2f} (95% CI {lo:.2f} to "
    "{hi:.2f}); 1 is ideal. Below 1 the predicted probabilities are too extreme (too close to 0 "
    "and 1): the model is overconfident, the usual mark of overfitting."
)
MSG_SLOPE_HIGH = (
    "The calibration slope of the out-of-fold predictions is {slope:.2f} (95% CI {lo:.2f} to "
    "{hi:.2f}); 1 is ideal. Above 1 the predicted probabilities are too timid (too close to the "
    "average), as after strong regularisation; no sign of overfitting here."
)
MSG_SLOPE_OK = (
    "The calibration slope of the out-of-fold predictions is {slope:.2f} (95% CI {lo:.2f} to "
    "{hi:.2f}), compatible with 1: the predictions are not overconfident."
)
REC_SLOPE = (
    "Regularise more or recalibrate the probabilities on out-of-fold data before using them "
    "as risks; the calibration check covers the probabilities at the deployment prevalence."
)
TITLE_LC = "Learning curve: {verdict}"
MSG_LC = (
    "Trained on {n_full:.0f} images per fold the model reaches an out-of-fold AUC of "
    "{auc_full:.2f}; the learning curve fitted to {n_fracs} training fractions predicts "
    "{auc_2x:.2f} (95% CI {lo_2x:.2f} to {hi_2x:.2f}) with twice the data, a gain of "
    "{gain:+.3f} (95% CI {glo:+.3f} to {ghi:+.3f}): {verdict}."
)
LC_HELP = "more data would likely help"
LC_FLAT = "the curve has flattened"
LC_UNSURE = "whether more data would help is uncertain"


@dataclass(frozen=True)
class OverfittingConfig:
    """Settings of the ``overfitting`` check.

    Attributes
    ----------
    warn_gap : float
        In-sample minus out-of-fold AUC (mean over folds) from which the gap is
        a warning, provided its 95 % CI excludes ``min_gap``. 0.10: a tenth of
        the AUC scale, e.g. 0.95 on the training images and 0.85 on new ones,
        more than the differences usually reported between competing models.
    min_gap : float
        A gap whose CI lies above this is reported (``info``) even when smaller
        than ``warn_gap``; 0.02 is within the noise of repeated training runs.
    memorised_auc : float
        In-sample AUC from which the message says the model "memorised" its
        training images (0.98: it separates almost all of them).
    spread_alpha : float
        Significance level of Cochran's Q test of fold heterogeneity (0.01:
        there are few folds and the test is approximate).
    min_recent_improvement : float
        Relative fall of the inner-validation loss over the last quarter of
        the epochs above which a fold whose best epoch is the last one is
        "still improving" (0.02; :func:`training_length`).
    undertrained_fraction : float
        Fraction of folds whose selected epoch is the last one trained from
        which under-training is a warning (0.5: a majority of the folds).
    slope_warn : float
        Calibration slope below which (with the 95 % CI below 1) the finding
        is a warning. 0.8: Van Calster et al. (2019) and Riley et al. (2020)
        aim for a slope of at least 0.9 at development; 0.8 leaves room for
        the sampling noise of small data sets.
    lc_flat_gain : float
        AUC gain at twice the data below which the learning curve has
        flattened (whole interval below), or above which more data would
        likely help (whole interval above). 0.01.
    n_boot : int
        Bootstrap replicates (overall gap, calibration slope).
    seed : int
        Seed of the bootstraps.
    """

    warn_gap: float = 0.10
    min_gap: float = 0.02
    memorised_auc: float = 0.98
    spread_alpha: float = 0.01
    undertrained_fraction: float = 0.5
    min_recent_improvement: float = 0.02
    slope_warn: float = 0.8
    lc_flat_gain: float = 0.01
    n_boot: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.min_gap <= self.warn_gap <= 1:
            raise ValueError(
                f"overfitting needs 0 <= min_gap <= warn_gap <= 1; got {self.min_gap} and "
                f"{self.warn_gap}"
            )
        if not 0 < self.spread_alpha < 1 or not 0 < self.undertrained_fraction <= 1:
            raise ValueError(
                "overfitting needs spread_alpha in (0, 1) and undertrained_fraction in (0, 1]"
            )
        if self.n_boot < 1:
            raise ValueError(f"overfitting n_boot must be >= 1; got {self.n_boot}")


# -- pure computation ---------------------------------------------------------------------


def _se(est: Estimate) -> float:
    """Standard error implied by a 95 % interval (NaN when it has none)."""
    return (est.high - est.low) / (2 * _Z) if np.isfinite(est.low) else float("nan")


def _fast_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """AUC for bootstrap loops: DeLong's midrank form for two classes, else macro OvR."""
    if probs.shape[1] != 2:
        return auc_score(y, probs)
    pos = y == 1
    if pos.all() or not pos.any():
        return float("nan")
    return float(delong_auc(pos.astype(int), probs[:, 1])[0])


def in_sample_gap(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    folds: np.ndarray,
    in_sample: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """In-sample vs out-of-fold AUC per fold and overall, with the gap's CI.

    Every interval is a percentile bootstrap over patients (rows without
    ``groups``), because images of one patient are not independent; all AUCs
    come from the same resamples (:func:`audit.stats.bootstrap_replicates`), so
    a gap's interval accounts for both of its AUCs and their correlation.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` given class indices.
    pred_probs : numpy.ndarray
        ``(N, K)`` out-of-fold probabilities.
    folds : numpy.ndarray
        ``(N,)`` fold of each row (``-1`` rows are ignored).
    in_sample : numpy.ndarray
        ``(N, F, K)`` fold ``f``'s probabilities on the rows it was fitted on,
        NaN elsewhere.
    groups : numpy.ndarray, optional
        ``(N,)`` patient keys.
    n_boot : int
        Bootstrap replicates.
    seed : int

    Returns
    -------
    dict
        ``folds``: per fold ``{fold, in_sample_auc, oof_auc, gap, n_in_sample,
        n_oof}`` (Estimates); ``in_sample_auc`` and ``oof_auc`` (means over
        folds, floats) and ``gap`` (the mean of the folds' gaps, an Estimate).
    """
    y = np.asarray(labels)
    p = np.asarray(pred_probs, dtype=float)
    ins = np.asarray(in_sample, dtype=float)
    folds = np.asarray(folds)
    g = None if groups is None else np.asarray(groups)
    unit = "patients" if g is not None else "rows"

    fold_ids = [
        k for k in range(ins.shape[1]) if np.isfinite(ins[:, k, 0]).any() and (folds == k).any()
    ]

    def stat(yy: np.ndarray, pp: np.ndarray, ff: np.ndarray, ii: np.ndarray) -> np.ndarray:
        """Per fold: in-sample AUC, out-of-fold AUC (one resample for all of them)."""
        out = np.empty((len(fold_ids), 2))
        for j, k in enumerate(fold_ids):
            fit = np.isfinite(ii[:, k, 0])
            oof = ff == k
            out[j] = _fast_auc(yy[fit], ii[fit, k]), _fast_auc(yy[oof], pp[oof])
        return out.ravel()

    if not fold_ids:
        nan = float("nan")
        return {
            "folds": [],
            "in_sample_auc": nan,
            "oof_auc": nan,
            "gap": Estimate(nan, nan, nan, 0.95, "no fold has in-sample rows"),
        }
    point, reps = bootstrap_replicates(stat, y, p, folds, ins, n_boot=n_boot, seed=seed, groups=g)
    point, reps = point.reshape(-1, 2), reps.reshape(n_boot, -1, 2)
    method = f"percentile bootstrap over {unit} ({n_boot} replicates)"

    def interval(value: float, draws: np.ndarray, what: str) -> Estimate:
        ok = draws[np.isfinite(draws)]
        if not ok.size:
            return Estimate(value, float("nan"), float("nan"), 0.95, f"{what}; {method}")
        lo, hi = np.quantile(ok, [0.025, 0.975])
        return Estimate(value, float(lo), float(hi), 0.95, f"{what}; {method}")

    per_fold = []
    for j, k in enumerate(fold_ids):
        per_fold.append({
            "fold": k,
            "in_sample_auc": interval(point[j, 0], reps[:, j, 0], "in-sample AUC"),
            "oof_auc": interval(point[j, 1], reps[:, j, 1], "out-of-fold AUC"),
            "gap": interval(point[j, 0] - point[j, 1], reps[:, j, 0] - reps[:, j, 1],
                            "in-sample minus out-of-fold AUC"),
            "n_in_sample": int(np.isfinite(ins[:, k, 0]).sum()),
            "n_oof": int((folds == k).sum()),
        })  # fmt: skip
    gaps = reps[:, :, 0] - reps[:, :, 1]
    overall = interval(
        float(np.mean(point[:, 0] - point[:, 1])),
        np.nanmean(gaps, axis=1) if np.isfinite(gaps).any() else gaps[:, 0],
        "mean over folds of (in-sample AUC - out-of-fold AUC)",
    )
    return {
        "folds": per_fold,
        "in_sample_auc": float(np.mean(point[:, 0])),
        "oof_auc": float(np.mean(point[:, 1])),
        "gap": overall,
    }


def fold_heterogeneity(aucs: list[Estimate]) -> dict[str, Any]:
    """Cochran's Q test that the folds' AUCs differ by more than sampling error.

    Parameters
    ----------
    aucs : list of Estimate
        Out-of-fold AUC of each fold with its 95 % interval.

    Returns
    -------
    dict
        ``q``, ``df``, ``p_value``, ``i2`` (Higgins & Thompson 2002), ``range``
        ``[min, max]`` and ``sd`` of the AUCs; ``p_value`` is None when fewer than
        two folds have a standard error.
    """
    est = np.array([a.estimate for a in aucs], dtype=float)
    se = np.array([_se(a) for a in aucs], dtype=float)
    ok = np.isfinite(est) & np.isfinite(se) & (se > 0)
    out: dict[str, Any] = {
        "range": [finite_or_none(np.nanmin(est), 4), finite_or_none(np.nanmax(est), 4)],
        "sd": finite_or_none(np.nanstd(est, ddof=1) if est.size > 1 else float("nan"), 4),
        "q": None,
        "df": None,
        "p_value": None,
        "i2": None,
        "method": "Cochran's Q on the folds' AUCs with inverse-variance weights (Cochran 1954); "
        "I² = (Q - df) / Q (Higgins & Thompson 2002)",
    }
    if ok.sum() < 2:
        return out
    w = 1 / se[ok] ** 2
    mean = float(np.sum(w * est[ok]) / w.sum())
    q = float(np.sum(w * (est[ok] - mean) ** 2))
    df = int(ok.sum() - 1)
    out.update(
        q=round(q, 3),
        df=df,
        p_value=float(sps.chi2.sf(q, df)),
        i2=round(max(0.0, (q - df) / q), 4) if q > 0 else 0.0,
    )
    return out


def training_length(
    history: dict[str, Any], *, min_recent_improvement: float = 0.02
) -> dict[str, Any] | None:
    """Where each fold's selected epoch sits in its inner-validation curve.

    A fold is *still improving* when its best epoch is the last one run, training
    was not stopped early, and the inner-validation loss fell by more than
    ``min_recent_improvement`` (relative) over the last quarter of the epochs
    (at least 2). The second condition keeps a converged run from counting: with
    a cosine schedule the learning rate goes to zero, so the last epoch is often
    the best by a hair even when nothing is left to learn.

    Parameters
    ----------
    history : dict
        ``train/history.json`` (``folds``: per fold ``epochs`` with
        ``inner_val_loss``, ``best_epoch``, ``stopped_early``).
    min_recent_improvement : float
        See :attr:`OverfittingConfig.min_recent_improvement`.

    Returns
    -------
    dict or None
        ``folds``: per fold ``{fold, best_epoch, epochs_run, epochs_past_best,
        at_edge, recent_improvement, still_improving, stopped_early,
        inner_val_loss_rise}``; ``n_at_edge``, ``n_still_improving``; None when no
        fold has an epoch curve (linear probe).
    """
    rows = []
    for f in history.get("folds", []):
        epochs = f.get("epochs") or []
        if not epochs or not f.get("best_epoch"):
            continue
        best = int(f["best_epoch"])
        run = len(epochs)
        losses = [e.get("inner_val_loss") for e in epochs]
        if all(v is None for v in losses):  # no inner split (a short schedule): no curve
            continue
        rise = None
        if losses[best - 1] is not None and losses[-1] is not None:
            rise = round(float(losses[-1]) - float(losses[best - 1]), 4)
        q = min(max(2, math.ceil(run / 4)), run - 1)
        recent = None
        if q >= 1 and losses[-1 - q] is not None and losses[-1] is not None and losses[-1 - q]:
            recent = round((float(losses[-1 - q]) - float(losses[-1])) / float(losses[-1 - q]), 4)
        at_edge = best == run and not f.get("stopped_early")
        rows.append(
            {
                "fold": f.get("fold"),
                "best_epoch": best,
                "epochs_run": run,
                "epochs_past_best": run - best,
                "stopped_early": bool(f.get("stopped_early")),
                "at_edge": at_edge,
                "recent_improvement": recent,
                "still_improving": bool(
                    at_edge and recent is not None and recent > min_recent_improvement
                ),
                "inner_val_loss_rise": rise,
            }
        )
    if not rows:
        return None
    return {
        "folds": rows,
        "n_at_edge": sum(r["at_edge"] for r in rows),
        "n_still_improving": sum(r["still_improving"] for r in rows),
    }


def learning_curve_outlook(
    curve: dict[str, Any], *, flat_gain: float = 0.01, n_boot: int = 300, seed: int = 0
) -> dict[str, Any]:
    """Fit the learning curve and extrapolate it to twice the training data.

    Parameters
    ----------
    curve : dict
        ``train/learning_curve.json``: ``points``, one per fold and fraction,
        each ``{fraction, fold, n_train, auc, auc_se}``.
    flat_gain : float
        See :attr:`OverfittingConfig.lc_flat_gain`.
    n_boot, seed
        Residual bootstrap of the fit.

    Returns
    -------
    dict
        ``n_full`` (mean training images per fold at the largest fraction),
        ``auc_full`` (fitted), ``auc_2x`` and ``gain_2x`` (Estimates), the
        parameters, ``rmse`` and ``verdict`` (:data:`LC_HELP`, :data:`LC_FLAT`
        or :data:`LC_UNSURE`).
    """
    from audit.learning_curve import fit_inverse_power_law

    pts = curve["points"]
    n = np.array([pt["n_train"] for pt in pts], dtype=float)
    auc = np.array([np.nan if pt["auc"] is None else pt["auc"] for pt in pts], dtype=float)
    se = np.array([np.nan if pt.get("auc_se") is None else pt["auc_se"] for pt in pts], dtype=float)
    use_se = np.isfinite(se).all() and (se > 0).all()
    fit = fit_inverse_power_law(n, auc, se=se if use_se else None, n_boot=n_boot, seed=seed)
    top = max(pt["fraction"] for pt in pts)
    n_full = float(np.mean([pt["n_train"] for pt in pts if pt["fraction"] == top]))
    gain = fit.gain(n_full, 2 * n_full)
    if gain.low > flat_gain:
        verdict = LC_HELP
    elif gain.high < flat_gain:
        verdict = LC_FLAT
    else:
        verdict = LC_UNSURE
    return {
        "n_full": n_full,
        "auc_full": fit.predict(n_full),
        "auc_2x": fit.predict(2 * n_full),
        "gain_2x": gain,
        "params": {"a": fit.a, "b": fit.b, "c": fit.c},
        "rmse": fit.rmse,
        "n_points": fit.n_points,
        "fractions": sorted({pt["fraction"] for pt in pts}),
        "verdict": verdict,
    }


# -- the check -----------------------------------------------------------------------------


def _fmt_gap(ins: float, oof: float, gap: Estimate) -> dict[str, float]:
    return {"ins": ins, "oof": oof, "gap": gap.estimate, "lo": gap.low, "hi": gap.high}


def _gap_finding(
    ctx: AuditContext,
    config: OverfittingConfig,
    p: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
) -> Finding | None:
    ev: dict[str, Any]
    if ctx.has("in_sample_probs"):
        ins = np.asarray(ctx.get("in_sample_probs"), dtype=float)
        res = in_sample_gap(
            ctx.labels, p, folds, ins, groups=groups, n_boot=config.n_boot, seed=config.seed
        )
        if not res["folds"]:
            return None
        gap: Estimate = res["gap"]
        mean_in, mean_out = res["in_sample_auc"], res["oof_auc"]
        fold_rows = [
            {
                "fold": r["fold"],
                "in_sample_auc": r["in_sample_auc"].to_dict(),
                "oof_auc": r["oof_auc"].to_dict(),
                "gap": r["gap"].to_dict(),
                "n_in_sample": r["n_in_sample"],
                "n_oof": r["n_oof"],
            }
            for r in res["folds"]
        ]
        oof_aucs = [r["oof_auc"] for r in res["folds"]]
        method = (
            "each fold's model scored on the rows it was fitted on "
            "(train/in_sample_probs.npy) and on its out-of-fold rows"
        )
    else:
        hist = ctx.get("history") if ctx.has("history") else {}
        recs = [f for f in hist.get("folds", []) if f.get("in_sample_auc") is not None]
        if not recs:
            return None
        ins_v = [float(f["in_sample_auc"]) for f in recs]
        out_v = [float(f["oof_auc"]) for f in recs if f.get("oof_auc") is not None]
        if len(out_v) != len(ins_v):
            return None
        mean_in, mean_out = float(np.mean(ins_v)), float(np.mean(out_v))
        d = np.array(ins_v) - np.array(out_v)
        se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
        t = float(sps.t.ppf(0.975, len(d) - 1)) if len(d) > 1 else float("nan")
        gap = Estimate(
            float(d.mean()),
            float(d.mean() - t * se),
            float(d.mean() + t * se),
            0.95,
            "t interval over the folds' point gaps (this run stored no in-sample "
            "probabilities; retrain for patient-level intervals)",
        )
        fold_rows = [
            {"fold": f.get("fold"), "in_sample_auc": a, "oof_auc": b}
            for f, a, b in zip(recs, ins_v, out_v, strict=True)
        ]
        oof_aucs = []
        method = "in-sample and out-of-fold AUC per fold from train/history.json (points only)"
    fmt = _fmt_gap(mean_in, mean_out, gap)
    low = gap.low if np.isfinite(gap.low) else gap.estimate
    if gap.estimate >= config.warn_gap and low > config.min_gap:
        severity = "warning"
    elif low > config.min_gap:
        severity = "info"
    else:
        severity = "pass"
    if severity == "pass":
        message = MSG_NO_GAP.format(**fmt)
    elif mean_in >= config.memorised_auc:
        message = MSG_MEMORISED.format(**fmt)
    else:
        message = MSG_GAP.format(**fmt)
    ev = {
        "in_sample_auc_mean": round(mean_in, 4),
        "oof_auc_mean": round(mean_out, 4),
        "gap": gap.to_dict(),
        "folds": fold_rows,
        "thresholds": {
            "warn_gap": config.warn_gap,
            "min_gap": config.min_gap,
            "memorised_auc": config.memorised_auc,
        },
        "sample_size_rules": "see the class_balance_and_size finding (Riley et al. 2020)",
        "method": method,
    }
    if oof_aucs:
        ev["fold_spread"] = fold_heterogeneity(oof_aucs)
    return Finding(
        check=NAME,
        severity=severity,  # type: ignore[arg-type]
        title=TITLE_GAP.format(**fmt),
        message=message,
        evidence=ev,
        recommendation=REC_GAP if severity != "pass" else "No action needed.",
        references=_REFS,
    )


def _spread_finding(gap: Finding, config: OverfittingConfig) -> Finding | None:
    spread = gap.evidence.get("fold_spread")
    if not spread or spread["p_value"] is None or spread["p_value"] >= config.spread_alpha:
        return None
    lo, hi = spread["range"]
    return Finding(
        check=NAME,
        severity="warning",
        title=TITLE_SPREAD.format(lo=lo, hi=hi),
        message=MSG_SPREAD.format(
            lo=lo,
            hi=hi,
            k=len(gap.evidence["folds"]),
            q=spread["q"],
            p=spread["p_value"],
            i2=spread["i2"],
        ),
        evidence={
            **spread,
            "oof_auc_per_fold": [f["oof_auc"] for f in gap.evidence["folds"]],
            "alpha": config.spread_alpha,
        },
        recommendation=REC_SPREAD,
        references=["CLAIM:evaluation", "TRIPOD+AI:analysis"],
    )


def _length_finding(history: dict[str, Any], config: OverfittingConfig) -> Finding | None:
    tl = training_length(history, min_recent_improvement=config.min_recent_improvement)
    if tl is None:
        return None
    k = len(tl["folds"])
    n_imp = tl["n_still_improving"]
    ev = {
        **tl,
        "undertrained_fraction": config.undertrained_fraction,
        "min_recent_improvement": config.min_recent_improvement,
        "method": "best epoch (lowest inner-validation loss) against the epochs trained, and "
        "the relative fall of that loss over the last quarter of the epochs, per fold, from "
        "train/history.json",
    }
    most = max(r["epochs_run"] for r in tl["folds"])
    if n_imp:
        still = [r for r in tl["folds"] if r["still_improving"]]
        epochs = ", ".join(
            f"epoch {r['best_epoch']} of {r['epochs_run']}, loss -{r['recent_improvement']:.0%}"
            for r in still[:5]
        )
        warn = n_imp / k >= config.undertrained_fraction
        return Finding(
            check=NAME,
            severity="warning" if warn else "info",
            title=TITLE_UNDERTRAINED.format(n=n_imp, k=k),
            message=MSG_UNDERTRAINED.format(n=n_imp, k=k, epochs=epochs),
            evidence=ev,
            recommendation=REC_UNDERTRAINED.format(suggest=2 * most),
            references=["CLAIM:model"],
        )
    inside = k - tl["n_at_edge"]
    past = float(np.mean([r["epochs_past_best"] for r in tl["folds"]]))
    return Finding(
        check=NAME,
        severity="pass",
        title=TITLE_LENGTH_OK.format(n=inside, k=k),
        message=MSG_LENGTH_OK.format(n=inside, k=k, past=past)
        + (MSG_FLAT_EDGE.format(n=tl["n_at_edge"]) if tl["n_at_edge"] else ""),
        evidence=ev,
        recommendation="No action needed.",
        references=["CLAIM:model"],
    )


def _slope_finding(
    ctx: AuditContext, p: np.ndarray, groups: np.ndarray, config: OverfittingConfig
) -> Finding | None:
    slope = calibration_slope(ctx.labels, p, groups=groups, n_boot=config.n_boot, seed=config.seed)
    if not np.isfinite(slope.estimate):
        return None
    fmt = {"slope": slope.estimate, "lo": slope.low, "hi": slope.high}
    if np.isfinite(slope.high) and slope.high < 1:
        severity = "warning" if slope.estimate < config.slope_warn else "info"
        message = MSG_SLOPE_LOW.format(**fmt)
    elif np.isfinite(slope.low) and slope.low > 1:
        severity, message = "info", MSG_SLOPE_HIGH.format(**fmt)
    else:
        severity, message = "pass", MSG_SLOPE_OK.format(**fmt)
    return Finding(
        check=NAME,
        severity=severity,  # type: ignore[arg-type]
        title=TITLE_SLOPE.format(**fmt),
        message=message,
        evidence={
            "calibration_slope": slope.to_dict(),
            "slope_warn": config.slope_warn,
            "method": slope.method,
        },
        recommendation=REC_SLOPE
        if severity in ("warning", "info") and slope.high < 1
        else "No action needed.",
        references=["CLAIM:evaluation", "TRIPOD+AI:analysis"],
    )


def _learning_curve_finding(curve: dict[str, Any], config: OverfittingConfig) -> Finding:
    out = learning_curve_outlook(
        curve, flat_gain=config.lc_flat_gain, n_boot=config.n_boot, seed=config.seed
    )
    a2, g = out["auc_2x"], out["gain_2x"]
    verdict = out["verdict"]
    message = MSG_LC.format(
        n_full=out["n_full"],
        auc_full=out["auc_full"].estimate,
        n_fracs=len(out["fractions"]),
        auc_2x=a2.estimate,
        lo_2x=a2.low,
        hi_2x=a2.high,
        gain=g.estimate,
        glo=g.low,
        ghi=g.high,
        verdict=verdict,
    )
    rec = {
        LC_HELP: "Collecting more images (of the same kind) is likely to improve the model.",
        LC_FLAT: "More images of the same kind are unlikely to help much; look at label "
        "quality, input resolution or the model instead.",
        LC_UNSURE: "Repeat the learning curve with more seeds or fractions to narrow it.",
    }
    return Finding(
        check=NAME,
        severity="info",
        title=TITLE_LC.format(verdict=verdict),
        message=message,
        evidence={
            "n_full": round(out["n_full"], 1),
            "auc_full_fitted": out["auc_full"].to_dict(),
            "auc_at_2x": a2.to_dict(),
            "gain_at_2x": g.to_dict(),
            "params": {k: round(v, 5) for k, v in out["params"].items()},
            "rmse": round(out["rmse"], 5),
            "n_points": out["n_points"],
            "fractions": out["fractions"],
            "flat_gain": config.lc_flat_gain,
            "points": curve["points"],
            "method": a2.method,
        },
        recommendation=rec[verdict],
        references=["CLAIM:sample-size", "TRIPOD+AI:sample-size"],
    )


def check_overfitting(ctx: AuditContext, config: OverfittingConfig) -> list[Finding]:
    """In-sample vs out-of-fold gap, fold spread, training length, calibration slope, learning curve.

    Parameters
    ----------
    ctx : AuditContext
        Needs ``pred_probs`` ``(N, K)`` and ``folds`` ``(N,)``; uses
        ``in_sample_probs`` ``(N, F, K)``, ``history`` and ``learning_curve``
        when present (each part is left out, and listed in the gap finding's
        evidence, when its evidence is missing).
    config : OverfittingConfig

    Returns
    -------
    list of Finding
    """
    p = check_pred_probs(
        ctx.get("pred_probs"), n_samples=ctx.n, n_classes=ctx.n_classes, row_names=ctx.sample_ids
    )
    folds = np.asarray(ctx.get("folds"))
    groups = ctx.manifest["patient_key"].astype(str).to_numpy()
    findings: list[Finding] = []
    gap = _gap_finding(ctx, config, p, folds, groups)
    if gap is not None:
        findings.append(gap)
        spread = _spread_finding(gap, config)
        if spread is not None:
            findings.append(spread)
    if ctx.has("history"):
        length = _length_finding(ctx.get("history"), config)
        if length is not None:
            findings.append(length)
    slope = _slope_finding(ctx, p, groups, config)
    if slope is not None:
        findings.append(slope)
    if ctx.has("learning_curve"):
        findings.append(_learning_curve_finding(ctx.get("learning_curve"), config))
    if not findings:
        findings.append(
            Finding(
                check=NAME,
                severity="info",
                title="Overfitting not assessed",
                message="Neither in-sample predictions nor a training history are available, and "
                "the out-of-fold predictions alone do not allow a calibration slope.",
                evidence={"method": "none"},
                recommendation="Train with medaudit train.",
                references=["CLAIM:model"],
            )
        )
    return findings


SPEC = CheckSpec(
    name=NAME,
    func=check_overfitting,
    config_cls=OverfittingConfig,
    requires=("pred_probs", "folds"),
    description="memorisation (in-sample vs out-of-fold AUC), fold spread, training length, "
    "calibration slope, learning curve",
)
