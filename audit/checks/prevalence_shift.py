"""Check ``prevalence_shift``: the model's numbers at the prevalence where it is used.

Sensitivity and specificity travel; PPV and NPV do not: a model validated at 25 %
prevalence and used in a 5 % screening programme calls many more false alarms per
true finding. The check

1. takes the labeled out-of-fold rows (of this run, or of the reference run when
   this run is a deployment batch: ``medaudit predict`` / ``medaudit drift``),
2. calibrates them by cross-fitting (the ``calibration`` check's calibrators; the
   one with the lowest cross-fitted Brier score by default),
3. when deployment predictions are at hand (a batch with a reference run),
   estimates the deployment prevalence from them: EM (Saerens et al. 2002) on the
   calibrated probabilities and BBSE (Lipton et al. 2018) on the model's hard
   calls, each with a patient-bootstrap interval; source and target rows scored
   alike (:func:`audit.prevalence.estimator_inputs`: each fold model's scores of
   the batch against the reference's out-of-fold rows, else held-out rows against
   the ensemble, else, biased and said so, out-of-fold rows against the ensemble),
4. adjusts the calibrated probabilities to the deployment prevalence by Bayes' rule,
   **after** calibration (Godau et al., MICCAI 2023: calibrate, then adjust),
5. recomputes the operating point on the adjusted probabilities with the shared
   helper (:mod:`audit.operating_point`), and tabulates sensitivity, specificity,
   PPV, NPV and false alarms per 1,000 screened at the training and the deployment
   prevalence, with intervals.

The deployment prevalence is the stated one (``deployment_prevalence``: ``medaudit
audit --deployment-prevalence``, stored in ``run.json['deployment']``), else the
estimate of ``estimator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from audit.check_spec import CheckSpec
from audit.context import AuditContext, ReferenceRun
from audit.findings import Finding
from audit.operating_point import choose_operating_point, predictive_values
from audit.prevalence import (
    MSG_BIASED_SOURCE,
    MSG_NOT_ESTIMABLE,
    adjust_to_prevalence,
    as_prior,
    discriminates,
    estimate_prevalence,
    estimator_inputs,
)
from audit.recalibration import (
    CALIBRATORS,
    apply_calibrator,
    choose_calibrator,
    cross_fit,
    fit_calibrator,
)
from audit.stats import Estimate, finite_or_none

__all__ = ["PrevalenceShiftConfig", "check_prevalence_shift", "deployment_table", "source_rows"]

NAME = "prevalence_shift"
TITLE_PPV = "At {prev:.3g}% prevalence, {fa} of every 10 positive calls would be false alarms"
TITLE_OK = "At {prev:.3g}% prevalence the positive predictive value stays at {ppv:.2f}"
TITLE_NONE = "No deployment prevalence to recompute the operating point at"
TITLE_DISAGREE = (
    "Stated deployment prevalence {stated:.1%} disagrees with the {est:.1%} the "
    "deployment data shows"
)
MSG_NONE = (
    "The model's predictive values depend on how common the condition is where it is "
    "used. State it (medaudit audit --deployment-prevalence 0.05, or [prevalence_shift] "
    "deployment_prevalence in the settings), or score a deployment batch with medaudit "
    "predict / medaudit drift so that it can be estimated."
)
MSG_NO_ESTIMATE = (
    "{method} gave no estimate (for BBSE: the model never predicts some class on "
    "the reference rows, so its confusion matrix cannot be inverted)"
)
MSG_NO_SOURCE = (
    "This run has no labels and no reference run: there is nothing labeled to "
    "calibrate on. Run medaudit drift REFERENCE_RUN on it."
)
_REFS = ["CLAIM:evaluation", "TRIPOD+AI:analysis", "GMLP-8", "GMLP-3"]


MSG_LABEL_SHIFT = (
    " The estimated prevalence assumes that only the mix of classes changed, not the images "
    "(label shift): if the drift check finds that this batch's images or the model's features "
    "changed, the estimate, and the sensitivity and specificity above, are unreliable; count "
    "the prevalence on labeled cases."
)


@dataclass(frozen=True)
class PrevalenceShiftConfig:
    """Settings of the ``prevalence_shift`` check.

    Attributes
    ----------
    deployment_prevalence : float or tuple of float, optional
        Prevalence where the model is used: for two classes the share of class 1
        (e.g. 0.05), otherwise one share per class summing to 1. Default: the
        estimate from a deployment batch, if any.
    calibrator : {'auto', 'none', 'temperature', 'logistic', 'beta', 'isotonic', 'histogram'}
        Calibration applied before the prior adjustment; ``auto`` cross-fits the
        candidates and keeps the lowest Brier score.
    operating_point : {'youden', 'sensitivity', 'specificity', 'fixed'}
        How the threshold is chosen at each prevalence (:mod:`audit.operating_point`).
    target : float, optional
        Target sensitivity / specificity, or the fixed threshold.
    min_ppv : float
        PPV at the deployment prevalence below which the finding is a warning
        (0.5: more false alarms than true findings among positive calls).
    estimator : {'bbse', 'em'}
        Estimate used as the deployment prevalence when none is stated. BBSE by
        default: it needs no calibration, and where the scores of source and batch
        are mismatched (a batch without per-fold probabilities, a reference without
        held-out rows) EM was biased far more (bench_calibration.py).
    n_boot : int
        Bootstrap replicates of every interval.
    cv_splits : int
        Patient folds of the cross-fitted calibration.
    seed : int
    """

    deployment_prevalence: float | tuple[float, ...] | None = None
    calibrator: Literal[
        "auto", "none", "temperature", "logistic", "beta", "isotonic", "histogram"
    ] = "auto"
    operating_point: Literal["youden", "sensitivity", "specificity", "fixed"] = "youden"
    target: float | None = None
    min_ppv: float = 0.5
    estimator: Literal["em", "bbse"] = "bbse"
    n_boot: int = 200
    cv_splits: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        v = self.deployment_prevalence
        if isinstance(v, list):
            object.__setattr__(self, "deployment_prevalence", tuple(float(x) for x in v))
        elif (v is not None and not isinstance(v, (int, float, tuple))) or isinstance(v, bool):
            raise ValueError(
                f"prevalence_shift deployment_prevalence must be a number or a list; got {v!r}"
            )
        if not 0 < self.min_ppv < 1:
            raise ValueError(f"prevalence_shift min_ppv must be in (0, 1); got {self.min_ppv}")


def source_rows(ctx: AuditContext) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Labeled rows to calibrate on: the reference run's when there is one, else this run's.

    Returns
    -------
    tuple or None
        ``labels (N,)``, ``probs (N, K)``, ``patient keys (N,)``; None when nothing
        labeled with probabilities is available.
    """
    if ctx.has("reference"):
        ref: ReferenceRun = ctx.get("reference")
        if ref.pred_probs is None:
            return None
        y, p, g = ref.labels, np.asarray(ref.pred_probs, np.float64), ref.groups
    elif ctx.has_labels:
        y, p = ctx.labels, np.asarray(ctx.get("pred_probs"), np.float64)
        g = ctx.manifest["patient_key"].astype(str).to_numpy()
    else:
        return None
    ok = (y >= 0) & np.isfinite(p).all(axis=1)
    return y[ok], p[ok], g[ok]


def _ends(se: Estimate, sp: Estimate, prev: float) -> dict[str, Any]:
    """PPV, NPV, false alarms per 1,000 at ``prev`` with intervals from the (se, sp) interval ends."""
    ppv, npv = predictive_values(se.estimate, sp.estimate, prev)
    lo = predictive_values(se.low, sp.low, prev)
    hi = predictive_values(se.high, sp.high, prev)
    method = (
        "Bayes' rule at the stated prevalence applied to the interval ends of sensitivity "
        "and specificity (PPV and NPV increase in both)"
    )

    def est(v: float, a: float, b: float, digits: int = 4) -> dict[str, Any]:
        return {
            "estimate": finite_or_none(v, digits),
            "ci_low": finite_or_none(a, digits),
            "ci_high": finite_or_none(b, digits),
            "level": se.level,
            "method": method,
        }

    fa = 1000 * (1 - sp.estimate) * (1 - prev)
    return {
        "ppv": est(ppv, lo[0], hi[0]),
        "npv": est(npv, lo[1], hi[1]),
        "false_alarms_per_1000": est(
            fa, 1000 * (1 - sp.high) * (1 - prev), 1000 * (1 - sp.low) * (1 - prev), 1
        ),
    }


def deployment_table(
    labels: np.ndarray,
    calibrated: np.ndarray,
    groups: np.ndarray,
    source_prior: np.ndarray,
    deployment_prior: np.ndarray,
    *,
    positive_class: int,
    config: PrevalenceShiftConfig,
) -> list[dict[str, Any]]:
    """Operating point and predictive values at the training and the deployment prevalence.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` labels of the source rows.
    calibrated : numpy.ndarray
        ``(N, K)`` their cross-fitted calibrated probabilities.
    groups : numpy.ndarray
        ``(N,)`` patient keys.
    source_prior, deployment_prior : numpy.ndarray
        ``(K,)`` class priors.
    positive_class : int
    config : PrevalenceShiftConfig

    Returns
    -------
    list of dict
        Two rows (``setting`` 'training' and 'deployment'): ``prevalence``,
        ``threshold`` (on the probabilities adjusted to that prevalence),
        ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``false_alarms_per_1000``
        (intervals in the one Estimate shape).
    """
    out = []
    for setting, prior in (("training", source_prior), ("deployment", deployment_prior)):
        q = adjust_to_prevalence(calibrated, source_prior, prior)
        op = choose_operating_point(
            labels,
            q,
            positive_class=positive_class,
            method=config.operating_point,
            target=config.target,
            groups=groups,
            seed=config.seed,
        )
        prev = float(prior[positive_class])
        out.append(
            {
                "setting": setting,
                "prevalence": round(prev, 4),
                "threshold": finite_or_none(op.threshold, 4),
                "sensitivity": op.sensitivity.to_dict(),
                "specificity": op.specificity.to_dict(),
                **_ends(op.sensitivity, op.specificity, prev),
            }
        )
    return out


def _calibrate(
    ys: np.ndarray, ps: np.ndarray, gs: np.ndarray, config: PrevalenceShiftConfig
) -> tuple[np.ndarray, dict[str, Any] | None]:
    if config.calibrator == "none":
        return ps, None
    if config.calibrator == "auto":
        name, cross, final = choose_calibrator(
            ys, ps, candidates=CALIBRATORS, groups=gs, n_splits=config.cv_splits, seed=config.seed
        )
        return cross[name], final
    cal, _ = cross_fit(
        config.calibrator, ys, ps, groups=gs, n_splits=config.cv_splits, seed=config.seed
    )
    return cal, fit_calibrator(config.calibrator, ys, ps)


def check_prevalence_shift(ctx: AuditContext, config: PrevalenceShiftConfig) -> list[Finding]:
    """Operating points and predictive values at the deployment prevalence (module docstring).

    Parameters
    ----------
    ctx : AuditContext
        Needs ``pred_probs``; labeled rows, or a ``reference`` run (then this run's
        rows are the deployment batch whose prevalence is estimated).
    config : PrevalenceShiftConfig

    Returns
    -------
    list of Finding
    """
    src = source_rows(ctx)
    if src is None:
        return [
            Finding(
                check=NAME,
                severity="info",
                title=TITLE_NONE,
                message=MSG_NO_SOURCE,
                evidence={"method": "needs labeled rows or a reference run"},
            )
        ]
    ys, ps, gs = src
    k = ps.shape[1]
    counts = np.bincount(ys, minlength=k)
    if (counts == 0).any():
        raise ValueError(
            f"prevalence_shift needs labeled rows of every class; class counts {counts.tolist()}"
        )
    source_prior = counts / counts.sum()
    calibrated, calibrator = _calibrate(ys, ps, gs, config)

    evidence: dict[str, Any] = {
        "training_prevalence": [round(float(v), 4) for v in source_prior],
        "classes": list(ctx.class_names),
        "calibrator": calibrator,
        "order": "calibrated (cross-fitted), then adjusted to the prevalence by Bayes' rule "
        "(Godau et al., MICCAI 2023)",
        "operating_point_method": config.operating_point,
        "n_source": len(ys),
        "source": "reference run" if ctx.has("reference") else "this run",
    }
    estimates: dict[str, list[Estimate]] = {}
    biased_note = ""
    ok_model, auc = discriminates(ys, ps, groups=gs)
    evidence["source_auc"] = auc.to_dict()
    if ctx.has("reference") and not ok_model:
        evidence["not_estimated"] = MSG_NOT_ESTIMABLE.format(
            auc=auc.estimate, low=auc.low, high=auc.high
        )
    if ctx.has("reference") and ok_model:
        ref: ReferenceRun = ctx.get("reference")
        inputs = estimator_inputs(
            ref.labels,
            np.asarray(ref.pred_probs, np.float64),
            ref.groups,
            ref.folds,
            np.asarray(ctx.get("pred_probs"), np.float64),
            ctx.manifest["patient_key"].astype(str).to_numpy(),
            target_by_fold=ctx.get("pred_probs_by_fold") if ctx.has("pred_probs_by_fold") else None,
        )
        ye, pe, ge = inputs.source_labels, inputs.source_probs, inputs.source_groups
        if inputs.biased:  # the calibrator chosen above (on the same rows)
            cal_e, prior_e = calibrator, source_prior
        else:  # the rows scored like the batch get their own calibrator
            cal_e = fit_calibrator("temperature", ye, pe)
            prior_e = np.bincount(ye, minlength=k) / len(ye)
        pt = inputs.target_probs
        pt_cal = apply_calibrator(cal_e, pt) if cal_e is not None else pt
        estimates["em"] = estimate_prevalence(
            pt_cal,
            method="em",
            source_prior=prior_e,
            target_groups=inputs.target_groups,
            n_boot=config.n_boot,
            seed=config.seed,
        )
        estimates["bbse"] = estimate_prevalence(
            pt,
            method="bbse",
            source_labels=ye,
            source_probs=pe,
            source_folds=inputs.source_folds,
            target_groups=inputs.target_groups,
            source_groups=ge,
            n_boot=config.n_boot,
            seed=config.seed,
        )
        evidence["estimator_source"] = inputs.source
        biased_note = MSG_BIASED_SOURCE if inputs.biased else ""
        evidence["estimator_source_detail"] = inputs.description
        evidence["n_deployment"] = inputs.n_target
        evidence["estimates"] = {m: [e.to_dict() for e in v] for m, v in estimates.items()}
        main = estimates[config.estimator][1 if k == 2 else 0]
        if not all(np.isfinite(e.estimate) for e in estimates[config.estimator]):
            evidence["not_estimated"] = MSG_NO_ESTIMATE.format(method=config.estimator.upper())
            estimates = {}
        else:
            evidence["estimated_prevalence"] = {
                **main.to_dict(),
                "method": (
                    f"{config.estimator.upper()} ({'Saerens et al. 2002' if config.estimator == 'em' else 'Lipton et al. 2018'}) "
                    f"for class {ctx.class_names[1 if k == 2 else 0]!r}; {main.method}"
                ),
            }

    findings: list[Finding] = []
    if config.deployment_prevalence is not None:
        dep = as_prior(config.deployment_prevalence, k, name="deployment_prevalence")
        dep_source = "stated"
    elif estimates:
        dep = np.clip([e.estimate for e in estimates[config.estimator]], 1e-4, None)
        dep = dep / dep.sum()
        dep_source = f"estimated ({config.estimator})"
    else:
        why = evidence.get("not_estimated")
        return [
            Finding(
                check=NAME,
                severity="info",
                title=TITLE_NONE,
                message=(why[0].upper() + why[1:] + ". " if why else "") + MSG_NONE,
                evidence={**evidence, "method": "nothing to estimate from"},
            )
        ]
        # no references: nothing was evaluated, so no reporting item is evidenced
    evidence["deployment_prevalence"] = [round(float(v), 4) for v in dep]
    evidence["deployment_prevalence_source"] = dep_source

    positives = [1] if k == 2 else list(range(k))
    tables = {
        ctx.class_names[c]: deployment_table(
            ys, calibrated, gs, source_prior, dep, positive_class=c, config=config
        )
        for c in positives
    }
    evidence["table"] = tables[ctx.class_names[positives[0]]] if k == 2 else None
    evidence["tables"] = tables
    evidence["method"] = (
        "operating point recomputed on the calibrated probabilities adjusted "
        "to each prevalence (audit.operating_point); PPV/NPV by Bayes' rule"
    )

    worst_name, worst = min(tables.items(), key=lambda kv: kv[1][1]["ppv"]["estimate"] or 0.0)
    c = ctx.class_names.index(worst_name)
    dep_row, train_row = worst[1], worst[0]
    ppv = dep_row["ppv"]["estimate"] or 0.0
    prev = float(dep[c])
    fa10 = round((1 - ppv) * 10)
    what = f" for {worst_name!r}" if k > 2 else ""
    msg = (
        f"At a prevalence of {prev:.1%}{what} ({dep_source}), the recalibrated model at its "
        f"{config.operating_point} operating point has a PPV of {ppv:.2f} (95% CI "
        f"{dep_row['ppv']['ci_low']} to {dep_row['ppv']['ci_high']}): {fa10} of every 10 positive "
        f"calls would be false alarms, about {dep_row['false_alarms_per_1000']['estimate']:.0f} "
        f"false alarms per 1,000 people screened. At the training prevalence of "
        f"{train_row['prevalence']:.1%} the PPV was {train_row['ppv']['estimate']:.2f}. "
        f"Sensitivity {dep_row['sensitivity']['estimate']:.2f} and specificity "
        f"{dep_row['specificity']['estimate']:.2f} do not depend on prevalence."
        + (biased_note + MSG_LABEL_SHIFT if dep_source.startswith("estimated") else "")
    )
    if dep_source.startswith("estimated"):
        evidence["assumption"] = (
            "label shift: the class mix changed, the images of each class did not (p(x | y) "
            "unchanged); checked by the drift check, not here"
        )
    low = ppv < config.min_ppv
    findings.append(
        Finding(
            check=NAME,
            severity="warning" if low else "info",
            title=(
                TITLE_PPV.format(prev=100 * prev, fa=fa10)
                if low
                else TITLE_OK.format(prev=100 * prev, ppv=ppv)
            )
            + what,
            message=msg,
            evidence=evidence,
            recommendation=(
                "Tell users what a positive call means at their prevalence; consider a "
                "stricter operating point (higher specificity) or a second reading for "
                "positive calls."
                if low
                else "Report PPV and NPV at the deployment prevalence, not the training one."
            ),
            references=_REFS,
        )
    )
    if config.deployment_prevalence is not None and estimates:
        e = estimates[config.estimator][1 if k == 2 else 0]
        stated = float(dep[1 if k == 2 else 0])
        if np.isfinite(e.low) and not e.low <= stated <= e.high:
            findings.append(
                Finding(
                    check=NAME,
                    severity="warning",
                    title=TITLE_DISAGREE.format(stated=stated, est=e.estimate),
                    message=(
                        f"The stated prevalence ({stated:.1%}) lies outside the 95% interval "
                        f"({e.low:.1%} to {e.high:.1%}) estimated from the deployment "
                        "predictions; the population differs from what was assumed, or the "
                        "model's probabilities have shifted (see the drift findings)." + biased_note
                    ),
                    evidence={
                        "stated": round(stated, 4),
                        "estimated_prevalence": e.to_dict(),
                        "estimator_source": evidence["estimator_source"],
                        "method": evidence["estimated_prevalence"]["method"],
                    },
                    recommendation="Check the intended population; re-estimate PPV with the "
                    "observed prevalence.",
                    references=_REFS,
                )
            )
    return findings


SPEC = CheckSpec(
    name=NAME,
    func=check_prevalence_shift,
    config_cls=PrevalenceShiftConfig,
    requires=("pred_probs",),
    description="sensitivity, specificity, PPV, NPV at the deployment prevalence (calibrate, "
    "then adjust); EM and BBSE prevalence estimates for deployment batches",
    model_based=True,
    needs_labels=False,
)
