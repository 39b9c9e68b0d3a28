"""How good is the model behind the model-based findings? (the engine-side rule).

Label issues, subgroup gaps, hidden strata, calibration and shortcut probes that
use the model's predictions are only as good as that model. Confident learning,
for example, counts a weak model's own errors as label errors: on the demo
before this rule, a model of out-of-fold AUC 0.75 reported a *critical* 22.5 %
label noise where 5.3 % had been planted.

This module is pure (arrays in, values out). It computes the model's
out-of-sample AUC with its 95 % interval (:func:`audit.metrics.auc_with_ci`:
binary ROC AUC, or the macro average of the one-vs-rest AUCs for more than two
classes; DeLong's interval with one image per patient, else a patient-level
bootstrap) against the *given* labels, and applies one documented, configurable
rule (:class:`ModelQualityConfig`, TOML section ``[model_quality]``):

    the model is **weak** when the lower bound of the 95 % interval of its
    out-of-fold AUC is below ``min_auc`` (0.80 by default).

The engine (:func:`audit.engine.audit_context`) attaches the assessment to the
evidence of every finding of a ``model_based`` check (``evidence["model_quality"]``)
and, when the model is weak, caps such findings at ``warning`` and lets the check
reword them (:attr:`audit.check_spec.CheckSpec.weak_model_wording`).

Every row of ``pred_probs`` is used: rows of ``folds >= 0`` are out-of-fold, rows
of ``folds == -1`` were scored by the fold ensemble without being trained on (or
by an external model), so all are out-of-sample.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from audit.metrics import auc_with_ci
from audit.stats import Estimate

__all__ = [
    "ModelQuality",
    "ModelQualityConfig",
    "Verdict",
    "assess_model_quality",
    "model_quality_of_context",
]

Verdict = Literal["adequate", "weak", "not assessed"]

#: Reason given when the model is weak (module constant: tests match it).
REASON_WEAK = (
    "the model's out-of-fold AUC is {auc:.2f} (95% CI {low:.2f} to {high:.2f}); its {basis} "
    "is below {min_auc:.2f}, so many of the images it disagrees with are its own mistakes "
    "rather than problems in the data"
)
REASON_ADEQUATE = (
    "the model's out-of-fold AUC is {auc:.2f} (95% CI {low:.2f} to {high:.2f}); its {basis} "
    "reaches {min_auc:.2f}"
)
REASON_NO_PROBS = "no out-of-fold probabilities, so the model's quality could not be assessed"
REASON_NOT_ESTIMABLE = "the AUC is not estimable (fewer than two classes have images)"
REASON_UNLABELED = (
    "this run has no labels and no reference run with out-of-sample predictions, so the "
    "model's quality could not be assessed"
)
REASON_FROM_REFERENCE = (
    "this batch has no labels, so its model is judged on its reference run '{name}' "
    "(not on this batch; the drift check says whether the batch differs): "
)
REASON_DISABLED = "the model-quality rule is switched off ([model_quality] enabled = false)"


@dataclass(frozen=True)
class ModelQualityConfig:
    """The model-quality rule (TOML section ``[model_quality]``).

    Attributes
    ----------
    enabled : bool
        Apply the rule; when false the AUC is still attached to the evidence,
        with the verdict ``'not assessed'``.
    min_auc : float
        Out-of-fold AUC the model must be shown to reach. 0.80: the lower edge
        of "excellent" discrimination in Hosmer, Lemeshow & Sturdivant
        (*Applied Logistic Regression*, 3rd ed. 2013, sec. 5.2.4: 0.7-0.8
        acceptable, 0.8-0.9 excellent, >= 0.9 outstanding). Below it, a model's
        confident mistakes are common enough to dominate model-based
        estimates: on the demo (5.3 % planted flips) a model of OOF AUC 0.75
        estimated 22.5 % label noise.
    basis : {'ci_low', 'estimate'}
        Compare ``min_auc`` with the lower bound of the 95 % interval (default:
        the model must be *shown* to be good enough, so a small data set whose
        AUC is uncertain is treated as weak) or with the point estimate.
    n_boot : int
        Bootstrap replicates when the interval is a patient-level bootstrap.
    seed : int
        Seed of that bootstrap.
    """

    enabled: bool = True
    min_auc: float = 0.80
    basis: Literal["ci_low", "estimate"] = "ci_low"
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.5 <= self.min_auc <= 1.0:
            raise ValueError(f"model_quality min_auc must be in [0.5, 1]; got {self.min_auc}")
        if self.basis not in ("ci_low", "estimate"):
            raise ValueError(
                f"model_quality basis must be 'ci_low' or 'estimate'; got {self.basis!r}"
            )
        if self.n_boot < 1:
            raise ValueError(f"model_quality n_boot must be >= 1; got {self.n_boot}")


@dataclass(frozen=True)
class ModelQuality:
    """The model's out-of-sample AUC and the verdict of the rule.

    Attributes
    ----------
    auc : Estimate
        Out-of-fold AUC with its 95 % CI (NaN when not assessed).
    verdict : {'adequate', 'weak', 'not assessed'}
        ``weak`` only when the rule is enabled and the AUC fails it.
    reason : str
        The verdict in one plain sentence, with the numbers.
    config : ModelQualityConfig
        The rule applied.
    n_rows : int
        Rows the AUC was computed on.
    """

    auc: Estimate
    verdict: Verdict
    reason: str
    config: ModelQualityConfig
    n_rows: int = 0

    @property
    def weak(self) -> bool:
        """True when the model is too weak for its findings to stand on their own."""
        return self.verdict == "weak"

    def to_evidence(self) -> dict[str, Any]:
        """The JSON shape of ``evidence["model_quality"]`` and ``run.json['audit']``."""
        return {
            "oof_auc": self.auc.to_dict(),
            "verdict": self.verdict,
            "reason": self.reason,
            "n_rows": self.n_rows,
            "rule": {
                "min_auc": self.config.min_auc,
                "basis": self.config.basis,
                "enabled": self.config.enabled,
            },
            "auc_definition": "ROC AUC against the given labels (macro one-vs-rest for more "
            "than two classes) on out-of-sample predictions",
        }


def assess_model_quality(
    labels: np.ndarray,
    pred_probs: np.ndarray | None,
    *,
    groups: np.ndarray | None = None,
    config: ModelQualityConfig | None = None,
) -> ModelQuality:
    """Apply the model-quality rule to out-of-sample predictions.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` given class indices.
    pred_probs : numpy.ndarray or None
        ``(N, K)`` out-of-sample probabilities; ``None`` gives ``'not assessed'``.
    groups : numpy.ndarray, optional
        ``(N,)`` patient keys (patient-level bootstrap when patients repeat).
    config : ModelQualityConfig, optional
        The rule (defaults when omitted).

    Returns
    -------
    ModelQuality

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400)
    >>> p1 = np.clip(0.5 + 0.05 * (2 * y - 1) + rng.normal(0, 0.1, 400), 0.01, 0.99)
    >>> assess_model_quality(y, np.c_[1 - p1, p1]).verdict
    'weak'
    """
    config = config or ModelQualityConfig()
    if pred_probs is None:
        nan = float("nan")
        return ModelQuality(
            Estimate(nan, nan, nan, 0.95, "none"), "not assessed", REASON_NO_PROBS, config
        )
    y = np.asarray(labels)
    p = np.asarray(pred_probs, dtype=np.float64)
    ok = np.isfinite(p).all(axis=1)
    g = None if groups is None else np.asarray(groups)[ok]
    auc = auc_with_ci(y[ok], p[ok], groups=g, n_boot=config.n_boot, seed=config.seed)
    n_rows = int(ok.sum())
    if not np.isfinite(auc.estimate):
        return ModelQuality(auc, "not assessed", REASON_NOT_ESTIMABLE, config, n_rows)
    if not config.enabled:
        return ModelQuality(auc, "not assessed", REASON_DISABLED, config, n_rows)
    use_low = config.basis == "ci_low" and np.isfinite(auc.low)
    value = auc.low if use_low else auc.estimate
    basis = "lower 95% bound" if use_low else "point estimate"
    fmt = {
        "auc": auc.estimate,
        "low": auc.low,
        "high": auc.high,
        "basis": basis,
        "min_auc": config.min_auc,
    }
    if value < config.min_auc:
        return ModelQuality(auc, "weak", REASON_WEAK.format(**fmt), config, n_rows)
    return ModelQuality(auc, "adequate", REASON_ADEQUATE.format(**fmt), config, n_rows)


def model_quality_of_context(ctx: Any, config: ModelQualityConfig | None = None) -> ModelQuality:
    """:func:`assess_model_quality` on an :class:`audit.context.AuditContext`.

    Parameters
    ----------
    ctx : AuditContext
        Uses ``pred_probs`` when available, the manifest's labels and ``patient_key``.
    config : ModelQualityConfig, optional

    Returns
    -------
    ModelQuality
    """
    if not ctx.has_labels:
        return _quality_from_reference(ctx, config)
    probs = ctx.get("pred_probs") if ctx.has("pred_probs") else None
    groups = (
        ctx.manifest["patient_key"].astype(str).to_numpy()
        if "patient_key" in ctx.manifest.columns
        else None
    )
    return assess_model_quality(ctx.labels, probs, groups=groups, config=config)


def _quality_from_reference(ctx: Any, config: ModelQualityConfig | None) -> ModelQuality:
    """An unlabeled batch: the model's quality is that measured on its reference run.

    The batch's own AUC cannot be computed without labels; the model that scored
    it is the reference run's fold ensemble, whose out-of-sample AUC is the best
    evidence of its quality (it says nothing about how well it does on the
    batch if the batch drifted: the drift check covers that).
    """
    config = config or ModelQualityConfig()
    nan = float("nan")
    ref = ctx.get("reference") if ctx.has("reference") else None
    if ref is None or ref.pred_probs is None:
        return ModelQuality(
            Estimate(nan, nan, nan, 0.95, "none"), "not assessed", REASON_UNLABELED, config
        )
    labeled = ref.labels >= 0
    quality = assess_model_quality(
        ref.labels[labeled], ref.pred_probs[labeled], groups=ref.groups[labeled], config=config
    )
    return replace(quality, reason=REASON_FROM_REFERENCE.format(name=ref.name) + quality.reason)
