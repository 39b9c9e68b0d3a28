"""Check ``calibration``: do the model's probabilities mean what they say?

A probability of 0.8 should come true about 8 times in 10. The check measures
this on the out-of-fold probabilities (rows with ``folds == -1``, a held-out split
scored by the fold ensemble, count too: neither was seen by the model that scored
it) and reports, each with a patient-cluster bootstrap interval
(:func:`audit.calibration.calibration_metrics`):

* ECE with equal-width and equal-mass bins, the monotone-sweep ECE (Roelofs et
  al. 2022), class-wise ECE, MCE and the Brier score;
* for two classes, the calibration slope (1 ideal; below 1 over-confident) and
  calibration-in-the-large (0 ideal);
* reliability-diagram data overall, per class (more than two classes) and per
  ``site``.

It then recalibrates by cross-fitting (:func:`audit.recalibration.choose_calibrator`):
temperature, Platt/logistic, beta, isotonic and histogram binning (netcal) are each
fitted on the other patient folds and applied to the held-out fold; the one with the
lowest cross-fitted Brier score is chosen and its before/after metrics reported.
``evidence["calibrator"]`` holds the chosen calibrator refitted on all rows
(``{name, params}``); :func:`audit.recalibration.apply_calibrator` applies it.

The training core's probabilities are already adjusted back to the training prior
after balanced class weighting (logit adjustment, ``docs/architecture.md``):
calibration is measured on what the run directory holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.calibration import (
    brier_score,
    calibration_metrics,
    classwise_ece,
    ece,
    reliability_bins,
)
from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.recalibration import CALIBRATORS, choose_calibrator
from audit.stats import bootstrap_ci

__all__ = ["CalibrationConfig", "check_calibration"]

NAME = "calibration"
TITLE = "Probabilities {verdict} (ECE {ece:.3f}); {calibrator} calibration brings it to {after:.3f}"
MSG_OVER = ("the model is over-confident: its probabilities are more extreme than the outcomes "
            "(calibration slope {slope:.2f}, ideal 1)")
MSG_UNDER = ("the model is under-confident: its probabilities are less extreme than the outcomes "
             "(calibration slope {slope:.2f}, ideal 1)")
MSG_SMALL = ("With only {n} labeled rows the intervals are wide (ECE ±{hw:.2f}); treat the "
             "calibration figures as rough.")
_REFS = ["CLAIM:evaluation", "TRIPOD+AI:analysis", "GMLP-8"]


@dataclass(frozen=True)
class CalibrationConfig:
    """Settings of the ``calibration`` check.

    Attributes
    ----------
    n_bins : int
        Bins of the fixed-bin metrics and the reliability diagrams (10, as in
        Guo et al. 2017 and netcal's default).
    n_boot : int
        Patient-cluster bootstrap replicates of every interval.
    calibrators : tuple of str
        Candidates of the cross-fitted recalibration (binary-only ones are left
        out for more than two classes).
    cv_splits : int
        Patient folds of the cross-fitting.
    warn_ece : float
        ECE above which the finding is a warning (0.05: probabilities off by 5
        percentage points on average).
    critical_ece : float
        ECE above which it is critical.
    min_rows : int
        Below this many labeled rows the message says the intervals are too wide
        to be useful (and the severity is at most a warning).
    min_group_rows : int
        Smallest site (or class) with its own reliability diagram.
    seed : int
    """

    n_bins: int = 10
    n_boot: int = 200
    calibrators: tuple[str, ...] = CALIBRATORS
    cv_splits: int = 5
    warn_ece: float = 0.05
    critical_ece: float = 0.15
    min_rows: int = 200
    min_group_rows: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.warn_ece <= self.critical_ece < 1:
            raise ValueError("calibration needs 0 < warn_ece <= critical_ece < 1; got "
                             f"{self.warn_ece} and {self.critical_ece}")
        unknown = sorted(set(self.calibrators) - set(CALIBRATORS))
        if unknown or not self.calibrators:
            raise ValueError(f"calibration calibrators must be among {list(CALIBRATORS)}; got "
                             f"{list(self.calibrators)}")
        if self.n_bins < 2 or self.n_boot < 10 or self.cv_splits < 2:
            raise ValueError("calibration needs n_bins >= 2, n_boot >= 10 and cv_splits >= 2")


def _rows(ctx: AuditContext) -> np.ndarray:
    probs = np.asarray(ctx.get("pred_probs"), dtype=np.float64)
    return np.flatnonzero(np.isfinite(probs).all(axis=1) & (ctx.labels >= 0))


def check_calibration(ctx: AuditContext, config: CalibrationConfig) -> list[Finding]:
    """Measure calibration and recalibrate by cross-fitting (see the module docstring).

    Parameters
    ----------
    ctx : AuditContext
        Needs ``pred_probs`` ``(N, K)``; ``site`` in the manifest adds per-site diagrams.
    config : CalibrationConfig

    Returns
    -------
    list of Finding
        One finding; ``evidence`` holds ``metrics`` (Estimates), ``reliability``
        (``[{lo, hi, n, mean_predicted, observed_rate}]``), ``reliability_per_class``,
        ``reliability_per_site``, ``calibrator`` (``{name, params}``) and
        ``recalibration`` (cross-fitted before/after per candidate).
    """
    rows = _rows(ctx)
    probs = np.asarray(ctx.get("pred_probs"), dtype=np.float64)[rows]
    y = ctx.labels[rows]
    groups = ctx.manifest["patient_key"].astype(str).to_numpy()[rows]
    k = probs.shape[1]
    binary = k == 2
    metrics = calibration_metrics(y, probs, groups=groups, n_bins=config.n_bins,
                                  n_boot=config.n_boot, seed=config.seed)
    pos = 1 if binary else None
    reliability = reliability_bins(y, probs, n_bins=config.n_bins, positive_class=pos)
    per_class = {} if binary else {
        ctx.class_names[c]: reliability_bins(y, probs, n_bins=config.n_bins, positive_class=c)
        for c in range(k) if int((y == c).sum()) >= 1}
    per_site: dict[str, Any] = {}
    if "site" in ctx.manifest.columns:
        site = ctx.manifest["site"].to_numpy(dtype=object)[rows]
        for s in sorted({str(v) for v in site if v is not None and v == v}):
            m = site == s
            if m.sum() >= config.min_group_rows:
                per_site[s] = {"n": int(m.sum()), "ece": round(ece(y[m], probs[m], n_bins=config.n_bins), 4),
                               "bins": reliability_bins(y[m], probs[m], n_bins=config.n_bins,
                                                        positive_class=pos)}

    chosen, cross, final = choose_calibrator(
        y, probs, candidates=config.calibrators, groups=groups, n_splits=config.cv_splits,
        seed=config.seed, n_bins=config.n_bins)
    recal = {}
    for name, q in cross.items():
        recal[name] = {
            "ece": bootstrap_ci(lambda a, b: ece(a, b, n_bins=config.n_bins), y, q, groups=groups,
                                n_boot=config.n_boot, seed=config.seed).to_dict(),
            "classwise_ece": round(classwise_ece(y, q, n_bins=config.n_bins), 4),
            "brier": round(brier_score(y, q), 4),
        }
    after = recal[chosen]["ece"]["estimate"]
    e = metrics["ece"]
    n = len(y)
    severity = ("critical" if e.estimate > config.critical_ece
                else "warning" if e.estimate > config.warn_ece else "pass")
    small = n < config.min_rows
    if small and severity == "critical":
        severity = "warning"
    verdict = {"critical": "are badly calibrated", "warning": "are miscalibrated",
               "pass": "are well calibrated"}[severity]
    parts = [f"On {n} labeled out-of-fold rows, the predicted probabilities differ from the "
             f"observed frequencies by {e.estimate:.3f} on average (ECE, 95% CI "
             f"{e.low:.3f} to {e.high:.3f})."]
    if binary:
        slope = metrics["calibration_slope"]
        if slope.high < 1:
            parts.append(MSG_OVER.format(slope=slope.estimate).capitalize() + ".")
        elif slope.low > 1:
            parts.append(MSG_UNDER.format(slope=slope.estimate).capitalize() + ".")
    parts.append(f"Recalibrating with {chosen} scaling (fitted on other patients, cross-fitted) "
                 f"gives an ECE of {after:.3f}.")
    if small:
        parts.append(MSG_SMALL.format(n=n, hw=(e.high - e.low) / 2))
    evidence: dict[str, Any] = {
        "n": n,
        "n_bins": config.n_bins,
        "metrics": {m: v.to_dict() for m, v in metrics.items()},
        "reliability": reliability,
        "reliability_kind": "probability of class 1 vs rate of class 1" if binary
        else "top-label confidence vs accuracy",
        "reliability_per_class": per_class,
        "reliability_per_site": per_site,
        "calibrator": final,
        "recalibration": recal,
        "calibrator_choice": "lowest cross-fitted Brier score among the candidates",
        "ci_too_wide": small,
        "method": "netcal-checked ECE/MCE (equal-width, equal-mass), sweep ECE (Roelofs et al. "
        "2022), Brier, logistic calibration slope/intercept (Cox 1958); patient-cluster "
        f"bootstrap; calibrators fitted with netcal, cross-fitted over {config.cv_splits} "
        "patient folds",
    }
    rec = ("Report the calibration with its interval; if the probabilities are shown to "
           f"clinicians, apply the recorded {chosen} calibrator (evidence 'calibrator') and "
           "recheck on an external set.") if severity != "pass" else \
        "Keep checking calibration on each new site or scanner."
    return [Finding(check=NAME, severity=severity,  # type: ignore[arg-type]
                    title=TITLE.format(verdict=verdict, ece=e.estimate, calibrator=chosen,
                                       after=after),
                    message=" ".join(parts), evidence=evidence, recommendation=rec,
                    references=_REFS)]


SPEC = CheckSpec(
    name=NAME,
    func=check_calibration,
    config_cls=CalibrationConfig,
    requires=("pred_probs",),
    description="calibration (ECE, MCE, Brier, slope) with CIs and cross-fitted recalibration",
    model_based=True,
)
