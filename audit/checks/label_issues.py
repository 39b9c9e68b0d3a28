"""Check ``label_issues``: images whose given label the model confidently contradicts.

Confident learning (Northcutt, Jiang & Chuang 2021, JAIR 70:1373) on the
out-of-fold probabilities: the *confident joint* counts, for each given class,
the images whose predicted probability of another class exceeds that class's
average self-confidence; calibrated, it estimates the joint distribution of
given and true labels, hence the noise rate and the noise matrix per class
pair. Individual images are ranked by a label-quality score
(:func:`cleanlab.rank.get_label_quality_scores`) and flagged by
:func:`cleanlab.filter.find_label_issues`.

Out-of-fold matters: a model that saw an image while training has memorised
its label and will not contradict it. Rows of ``folds == -1`` were scored by
the ensemble of fold models without being trained on, so they are
out-of-sample as well.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.stats import Estimate, bootstrap_category_totals
from audit.validation import check_labels, check_pred_probs

__all__ = [
    "FilterBy",
    "LabelIssuesConfig",
    "RankBy",
    "check_label_issues",
    "estimate_noise",
    "label_issue_table",
]

NAME = "label_issues"

FilterBy = Literal[
    "low_self_confidence",
    "low_normalized_margin",
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
]
RankBy = Literal["self_confidence", "normalized_margin", "confidence_weighted_entropy"]

_REFS = ["CLAIM:reference-standard", "CLAIM:annotation", "TRIPOD+AI:data-preparation",
         "GMLP-5", "EU-AI-Act-10(3)"]

TITLE_NOISE = "Estimated label noise {rate:.1%} ({level:.0%} CI {low:.1%} to {high:.1%})"
TITLE_NOT_ESTIMABLE = "Label noise not estimable: fewer than two classes have images"
TITLE_ROLLUP = "Label roll-up: {detail} with images of different labels"
MESSAGE_NOISE = (
    "About {rate:.1%} of the images ({level:.0%} CI {low:.1%} to {high:.1%}) carry a label that a "
    "model which never saw them confidently contradicts. {n_issues} images are flagged as "
    "likely mislabelled; the most suspicious are listed with the label the model suggests. "
    "Some flags are hard or ambiguous images rather than errors: each needs a look by a reader."
)
RECOMMEND_NOISE = (
    "Have an expert re-read the flagged images (most suspicious first) against the reference "
    "standard, correct confirmed errors, and report the estimated noise rate with the "
    "reference standard (CLAIM). Do not drop flagged images without review."
)
RECOMMEND_PASS = "No action needed; re-run after relabelling or adding data."
TITLE_UPPER_BOUND = (
    "Label noise at most {rate:.1%} ({level:.0%} CI {low:.1%} to {high:.1%}): an upper bound, "
    "the model is weak"
)
MESSAGE_UPPER_BOUND = (
    "A model that never saw them confidently contradicts the labels of about {rate:.1%} of the "
    "images ({level:.0%} CI {low:.1%} to {high:.1%}). The model behind this number is weak: "
    "{reason}. Confident learning counts the model's own confident mistakes as label errors, so "
    "{rate:.1%} is an upper bound on the share of wrong labels, not an estimate of it; the true "
    "rate may be much lower. The {n_issues} flagged images are a reading list, most suspicious "
    "first, not a list of errors."
)
RECOMMEND_UPPER_BOUND = (
    "Improve the model before trusting the noise rate (more data or epochs, a pretrained "
    "backbone from a local weights file, a larger input size) and audit again. Meanwhile have "
    "an expert re-read the most suspicious flagged images; if few are confirmed, the labels "
    "are better than this upper bound suggests."
)


@dataclass(frozen=True)
class LabelIssuesConfig:
    """Settings of the ``label_issues`` check.

    Attributes
    ----------
    filter_by : str
        How images are flagged (:func:`cleanlab.filter.find_label_issues`).
        Default ``'prune_by_noise_rate'`` (cleanlab's default): for each
        off-diagonal cell of the confident joint, flag that many images with
        the largest margin for the other class. On BreastMNIST with 10 %
        planted flips (``bench/bench_label_noise.py``) it gave the best F1 of
        all filters on the training core's OOF probabilities (0.431 at 28 px,
        0.486 at 64 px, against 0.424 and 0.467 for ``'low_self_confidence'``,
        which flags fewer images with slightly higher precision). On seeded
        simulations (K = 2 to 5, model AUC 0.93-0.99) the two were within 0.035
        of each other on F1. ``'low_self_confidence'`` is the choice when
        a short, precise review list matters more than recall.
    rank_by : str
        Label-quality score used for ranking (:func:`cleanlab.rank.get_label_quality_scores`):
        ``'self_confidence'`` (probability of the given label; the best or a
        tied AUROC for the planted flips in every simulated setting; for two
        classes all three scores rank identically), ``'normalized_margin'`` or
        ``'confidence_weighted_entropy'``.
    adjust_pred_probs : bool
        Subtract each class's average self-confidence before scoring
        (cleanlab option), meant for strongly imbalanced classes; it lowered
        the AUROC slightly in every simulated setting, so it is off by default.
    min_examples_per_class : int
        Never flag so many images of a class that fewer than this remain
        (``prune_by_*`` filters only).
    warn_noise_rate : float
        Estimated noise rate above which the finding is a warning. 5 %: the
        average label-error rate found in widely used benchmark test sets
        (3.3 %, Northcutt, Athalye & Mueller 2021, NeurIPS Datasets) is below
        it, and at 5 % noise against the truth, given labels and truth agree
        with Cohen's kappa of about 0.88 at 30 % prevalence, McHugh's (2012)
        "strong" band; above it reported accuracies start to be biased by more
        than typical differences between models.
    critical_noise_rate : float
        Noise rate above which the finding is critical. 15 %: agreement with
        the truth then falls to kappa of about 0.64 (30 % prevalence), the
        lower edge of "moderate" agreement between radiologists
        (McHugh 2012; Landis & Koch 1977), the level at which public chest
        X-ray labels were judged unfit as a reference standard
        (Oakden-Rayner 2020, Acad Radiol 27:106).
    severity_basis : {'estimate', 'ci_low'}
        Compare the thresholds with the point estimate or with the lower
        bound of its interval (more conservative for small data sets).
    n_boot : int
        Bootstrap replicates for the noise-rate interval.
    ci_level : float
        Confidence level of the interval.
    bootstrap_unit : {'patient', 'image'}
        Resample patients (keeps images of one patient together; honest when
        patients have several images) or images.
    seed : int
        Seed of the bootstrap.
    max_listed : int
        Most suspicious images listed in the evidence and ``sample_ids`` (the
        full table comes from :func:`label_issue_table`).
    n_jobs : int
        Processes for cleanlab's ``prune_by_*`` filters (1 = no multiprocessing).
    """

    filter_by: FilterBy = "prune_by_noise_rate"
    rank_by: RankBy = "self_confidence"
    adjust_pred_probs: bool = False
    min_examples_per_class: int = 1
    warn_noise_rate: float = 0.05
    critical_noise_rate: float = 0.15
    severity_basis: Literal["estimate", "ci_low"] = "estimate"
    n_boot: int = 1000
    ci_level: float = 0.95
    bootstrap_unit: Literal["patient", "image"] = "patient"
    seed: int = 0
    max_listed: int = 100
    n_jobs: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.warn_noise_rate <= self.critical_noise_rate <= 1:
            raise ValueError(
                "label_issues needs 0 <= warn_noise_rate <= critical_noise_rate <= 1; got "
                f"{self.warn_noise_rate} and {self.critical_noise_rate}"
            )
        if not 0 < self.ci_level < 1:
            raise ValueError(f"label_issues ci_level must be in (0, 1); got {self.ci_level}")
        if self.n_boot < 1 or self.max_listed < 0 or self.n_jobs < 1:
            raise ValueError("label_issues needs n_boot >= 1, max_listed >= 0 and n_jobs >= 1")


# -- pure computation ---------------------------------------------------------------------


def label_issue_table(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    filter_by: FilterBy = "prune_by_noise_rate",
    rank_by: RankBy = "self_confidence",
    adjust_pred_probs: bool = False,
    min_examples_per_class: int = 1,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Per-sample label-issue table (cleanlab's ``is_<issue>`` / ``<issue>_score`` vocabulary).

    Parameters
    ----------
    labels : numpy.ndarray
        Shape ``(N,)`` given class indices.
    pred_probs : numpy.ndarray
        Shape ``(N, K)`` out-of-sample probabilities, rows summing to one.
    filter_by, rank_by, adjust_pred_probs, min_examples_per_class, n_jobs
        See :class:`LabelIssuesConfig`.

    Returns
    -------
    pandas.DataFrame
        N rows in input order with columns ``given_label`` (int),
        ``suggested_label`` (argmax of ``pred_probs``), ``suggested_label_prob``,
        ``label_quality_score`` (in [0, 1], low = likely mislabelled),
        ``is_label_issue`` (bool) and ``issue_rank`` (1 = most suspicious
        image of the whole set, by ascending score).

    Raises
    ------
    ValueError
        On invalid labels or probabilities.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    p = check_pred_probs(pred_probs)
    y = check_labels(labels, n_classes=p.shape[1])
    if len(y) != len(p):
        raise ValueError(f"labels has {len(y)} rows but pred_probs has {len(p)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns on classes absent from labels
        scores = get_label_quality_scores(
            y, p, method=rank_by, adjust_pred_probs=adjust_pred_probs
        )
        mask = find_label_issues(
            y, p, filter_by=filter_by, min_examples_per_class=min_examples_per_class,
            n_jobs=n_jobs,
        )
    order = np.argsort(scores, kind="stable")
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(1, len(y) + 1)
    suggested = p.argmax(axis=1)
    return pd.DataFrame(
        {
            "given_label": y,
            "suggested_label": suggested,
            "suggested_label_prob": p[np.arange(len(y)), suggested],
            "label_quality_score": scores,
            "is_label_issue": mask.astype(bool),
            "issue_rank": rank,
        }
    )


def _confident_cells(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Cell of each row in the (given, confident-true or 'none') table, ``(N,)`` ints.

    Follows the counting rule of :func:`cleanlab.count.compute_confident_joint`
    (Northcutt et al. 2021, eq. 2): a row is confidently of class j when
    ``p_j >= t_j`` with ``t_j`` the mean self-confidence of class j; several
    confident classes resolve to the argmax; none gives the extra column K.
    """
    from cleanlab.count import get_confident_thresholds

    k = pred_probs.shape[1]
    thresholds = np.asarray(get_confident_thresholds(labels, pred_probs), dtype=float)
    conf = pred_probs >= thresholds - 1e-6
    n_conf = conf.sum(axis=1)
    guess = np.where(n_conf > 1, pred_probs.argmax(axis=1), conf.argmax(axis=1))
    guess = np.where(n_conf == 0, k, guess)
    return labels * (k + 1) + guess


def _joint_from_totals(totals: np.ndarray, k: int) -> np.ndarray:
    """Calibrated joint ``P(given=i, true=j)`` from cell totals ``(..., K*(K+1))``.

    The calibration of :func:`cleanlab.count.calibrate_confident_joint`
    (rows rescaled to the given-label counts, then to sum one), without its
    integer rounding so that bootstrap replicates vary smoothly.
    """
    t = totals.reshape(*totals.shape[:-1], k, k + 1).astype(float)
    cj = t[..., :k].copy()
    diag = np.einsum("...ii->...i", cj)
    diag[...] = np.maximum(diag, 1.0)  # cleanlab keeps >= 1 count on every diagonal cell
    label_counts = t.sum(axis=-1)
    cal = cj / np.clip(cj.sum(axis=-1, keepdims=True), 1e-12, None) * label_counts[..., None]
    return cal / np.clip(cal.sum(axis=(-2, -1), keepdims=True), 1e-12, None)


def estimate_noise(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Estimated noise rate and noise matrix with bootstrap intervals.

    The point estimate is cleanlab's calibrated joint
    (:func:`cleanlab.count.estimate_joint`); the noise rate is one minus its
    trace. The interval is a percentile bootstrap over rows, or over clusters
    with ``groups``, holding the per-class confidence thresholds at their
    full-data values (class means over many rows, whose sampling variation is
    second order); under that condition resampling rows is a multinomial
    draw of the cell counts, computed by :func:`audit.stats.bootstrap_category_totals`.

    Parameters
    ----------
    labels : numpy.ndarray
        Shape ``(N,)`` given class indices.
    pred_probs : numpy.ndarray
        Shape ``(N, K)``.
    groups : numpy.ndarray, optional
        Shape ``(N,)`` cluster labels (patients) for a cluster bootstrap.
    n_boot : int
        Replicates.
    ci_level : float
        Confidence level.
    seed : int
        Seed.

    Returns
    -------
    dict
        ``noise_rate`` (:class:`~audit.stats.Estimate`), ``joint`` ``(K, K)``
        (rows: given, columns: true), ``pair_rates`` ``(K, K)`` =
        ``P(true=j | given=i)``, ``pair_low`` and ``pair_high`` ``(K, K)``
        interval bounds of ``pair_rates``.
    """
    from cleanlab.count import compute_confident_joint, estimate_joint

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(pred_probs, dtype=float)
    k = p.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cj = compute_confident_joint(y, p, calibrate=False)
        joint = estimate_joint(y, p, confident_joint=cj)
    cells = _confident_cells(y, p)
    totals = bootstrap_category_totals(cells, k * (k + 1), groups=groups, n_boot=n_boot, seed=seed)
    reps = _joint_from_totals(totals, k)
    alpha = 1 - ci_level
    noise_reps = 1 - np.einsum("bii->b", reps)
    row = reps.sum(axis=2, keepdims=True)
    pair_reps = np.divide(reps, row, out=np.zeros_like(reps), where=row > 0)
    unit = "patients" if groups is not None else "images"
    method = (
        f"percentile bootstrap over {unit} ({n_boot} replicates), confidence thresholds held "
        "at their full-data values"
    )
    rate = float(1 - np.trace(joint))
    lo, hi = np.quantile(noise_reps, [alpha / 2, 1 - alpha / 2])
    row_p = joint.sum(axis=1, keepdims=True)
    pair_rates = np.divide(joint, row_p, out=np.zeros_like(joint), where=row_p > 0)
    return {
        "noise_rate": Estimate(rate, float(min(lo, rate)), float(max(hi, rate)), ci_level, method),
        "joint": joint,
        "pair_rates": pair_rates,
        "pair_low": np.quantile(pair_reps, alpha / 2, axis=0),
        "pair_high": np.quantile(pair_reps, 1 - alpha / 2, axis=0),
    }


def _kappa_equivalent(noise_rate: float, prior: np.ndarray) -> float:
    """Cohen's kappa between given and true labels implied by a noise rate.

    Chance agreement is computed from the given-label prior on both sides
    (an approximation: the true prior is close to it at low noise).
    """
    pe = float(np.sum(prior**2))
    return (1 - noise_rate - pe) / (1 - pe) if pe < 1 else float("nan")


# -- the check -----------------------------------------------------------------------------------


def _rollup(
    manifest: pd.DataFrame, table: pd.DataFrame, column: str, max_listed: int
) -> dict[str, Any]:
    df = pd.DataFrame(
        {
            "key": manifest[column].astype(str).to_numpy(),
            "label": table["given_label"].to_numpy(),
            "flag": table["is_label_issue"].to_numpy(),
        }
    )
    grp = df.groupby("key", sort=False)
    n_labels_row = grp["label"].transform("nunique").to_numpy()
    summary = pd.DataFrame(
        {
            "n_images": grp.size(),
            "n_labels": grp["label"].nunique(),
            "n_flagged": grp["flag"].sum().astype(int),
        }
    )
    multi = summary[summary["n_images"] > 1]
    conflict = multi[multi["n_labels"] > 1]
    flagged = summary[summary["n_flagged"] > 0]
    listed = (
        summary[(summary["n_labels"] > 1) | (summary["n_flagged"] > 0)]
        .sort_values(["n_flagged", "n_labels", "n_images"], ascending=False)
        .head(max_listed)
    )
    return {
        "unit": column,
        "n_groups": len(summary),
        "n_with_several_images": len(multi),
        "n_with_conflicting_labels": len(conflict),
        "n_with_flagged_images": len(flagged),
        "listed": [
            {"key": str(key), "n_images": int(r.n_images), "n_distinct_labels": int(r.n_labels),
             "n_flagged": int(r.n_flagged)}
            for key, r in listed.iterrows()
        ],
        "_conflict_rows": np.flatnonzero(n_labels_row > 1),
    }


def _severity(rate: Estimate, config: LabelIssuesConfig) -> str:
    value = rate.estimate if config.severity_basis == "estimate" else rate.low
    if value > config.critical_noise_rate:
        return "critical"
    if value > config.warn_noise_rate:
        return "warning"
    return "pass"


def check_label_issues(ctx: AuditContext, config: LabelIssuesConfig) -> list[Finding]:
    """Flag likely mislabelled images and estimate the label-noise rate.

    Parameters
    ----------
    ctx : AuditContext
        Needs ``pred_probs`` ``(N, K)`` (out-of-fold); uses ``folds`` ``(N,)``
        when present (reported only), ``patient_key`` for the cluster
        bootstrap and the roll-up, ``study_key`` when present.
    config : LabelIssuesConfig
        Settings.

    Returns
    -------
    list of Finding
        The noise-rate finding (severity from the estimated rate) and, when
        patients or studies have several images, an ``info`` roll-up.
    """
    names = ctx.class_names
    k = ctx.n_classes
    p = check_pred_probs(ctx.get("pred_probs"), n_samples=ctx.n, n_classes=k,
                         row_names=ctx.sample_ids)
    y = check_labels(ctx.labels, n_classes=k, name="manifest column 'label'")
    present = np.bincount(y, minlength=k)
    if (present > 0).sum() < 2:
        return [
            Finding(
                check=NAME, severity="info", title=TITLE_NOT_ESTIMABLE,
                message="All images carry the same label, so the model cannot contradict any "
                "of them; label noise was not assessed.",
                evidence={"class_counts": {names[i]: int(c) for i, c in enumerate(present)},
                          "method": "confident learning (cleanlab)"},
                recommendation="Check that the label column was read correctly.",
                references=["CLAIM:reference-standard"],
            )
        ]
    table = label_issue_table(
        y, p, filter_by=config.filter_by, rank_by=config.rank_by,
        adjust_pred_probs=config.adjust_pred_probs,
        min_examples_per_class=config.min_examples_per_class, n_jobs=config.n_jobs,
    )
    groups = (
        ctx.manifest["patient_key"].astype(str).to_numpy()
        if config.bootstrap_unit == "patient" else None
    )
    noise = estimate_noise(y, p, groups=groups, n_boot=config.n_boot,
                           ci_level=config.ci_level, seed=config.seed)
    rate: Estimate = noise["noise_rate"]
    severity = _severity(rate, config)

    flagged = table[table["is_label_issue"]].sort_values("issue_rank")
    ids = ctx.sample_ids
    patient = ctx.manifest["patient_key"].astype(str).to_numpy()
    listed = flagged.head(config.max_listed)
    top = [
        {
            "sample_id": str(ids[i]),
            "patient_key": str(patient[i]),
            "given_label": names[int(r.given_label)],
            "suggested_label": names[int(r.suggested_label)],
            "suggested_label_prob": round(float(r.suggested_label_prob), 4),
            "label_quality_score": round(float(r.label_quality_score), 4),
        }
        for i, r in listed.iterrows()
    ]
    pairs = []
    joint = noise["joint"]
    flag_pairs = pd.crosstab(flagged["given_label"], flagged["suggested_label"])
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            has = i in flag_pairs.index and j in flag_pairs.columns
            n_flag = int(flag_pairs.loc[i, j]) if has else 0
            pairs.append(
                {
                    "given": names[i], "suggested": names[j],
                    "estimated_count": round(float(joint[i, j] * ctx.n), 1),
                    "rate_given": round(float(noise["pair_rates"][i, j]), 4),
                    "rate_given_ci": [round(float(noise["pair_low"][i, j]), 4),
                                      round(float(noise["pair_high"][i, j]), 4)],
                    "n_flagged": n_flag,
                }
            )
    prior = present / present.sum()
    folds_info: dict[str, Any] = {}
    if ctx.has("folds"):
        folds = np.asarray(ctx.get("folds"))
        folds_info = {"n_oof_rows": int((folds >= 0).sum()),
                      "n_heldout_ensemble_rows": int((folds < 0).sum())}
    kappa_eq = _kappa_equivalent(rate.estimate, prior)
    evidence: dict[str, Any] = {
        "n_samples": ctx.n,
        "n_label_issues": len(flagged),
        "fraction_flagged": round(len(flagged) / ctx.n, 4),
        "noise_rate": rate.to_dict(),
        "kappa_given_vs_true_equivalent": round(kappa_eq, 3) if np.isfinite(kappa_eq) else None,
        "noise_matrix": pairs,
        "top_issues": top,
        "thresholds": {"warn_noise_rate": config.warn_noise_rate,
                       "critical_noise_rate": config.critical_noise_rate,
                       "severity_basis": config.severity_basis},
        "method": (
            "confident learning on out-of-fold pred_probs (Northcutt et al. 2021): "
            f"cleanlab.filter.find_label_issues(filter_by={config.filter_by!r}), "
            f"cleanlab.rank.get_label_quality_scores(method={config.rank_by!r}, "
            f"adjust_pred_probs={config.adjust_pred_probs}), noise rate = 1 - trace of "
            "cleanlab.count.estimate_joint"
        ),
        **folds_info,
    }
    if severity == "pass":
        message = (
            f"The estimated share of wrong labels is {rate.estimate:.1%} ({rate.level:.0%} CI "
            f"{rate.low:.1%} to {rate.high:.1%}), below the {config.warn_noise_rate:.0%} "
            "warning level."
            + (f" {len(flagged)} images are still worth a second look." if len(flagged) else "")
        )
    else:
        message = MESSAGE_NOISE.format(rate=rate.estimate, low=rate.low, high=rate.high,
                                       level=rate.level, n_issues=len(flagged))
    findings = [
        Finding(
            check=NAME, severity=severity,  # type: ignore[arg-type]
            title=TITLE_NOISE.format(rate=rate.estimate, low=rate.low, high=rate.high,
                                     level=rate.level),
            message=message, evidence=evidence,
            sample_ids=[t["sample_id"] for t in top],
            recommendation=RECOMMEND_NOISE if severity != "pass" else RECOMMEND_PASS,
            references=_REFS,
        )
    ]
    findings.extend(_rollup_findings(ctx, table, config))
    return findings


def _rollup_findings(
    ctx: AuditContext, table: pd.DataFrame, config: LabelIssuesConfig
) -> list[Finding]:
    units = [c for c in ("patient_key", "study_key") if c in ctx.manifest.columns]
    rollups = {}
    for col in units:
        if ctx.manifest[col].isna().all():
            continue
        r = _rollup(ctx.manifest, table, col, config.max_listed)
        if r["n_with_several_images"] > 0:
            rollups[col] = r
    if not rollups:
        return []
    conflict_rows: list[int] = []
    for r in rollups.values():
        conflict_rows.extend(r.pop("_conflict_rows")[: config.max_listed].tolist())
    flagged_rows = table.index[table["is_label_issue"]][: config.max_listed].tolist()
    rows = list(dict.fromkeys(conflict_rows + flagged_rows))[: config.max_listed]
    ids = ctx.sample_ids
    parts = []
    for col, r in rollups.items():
        unit = "patients" if col == "patient_key" else "studies"
        parts.append(
            f"{r['n_with_conflicting_labels']} of {r['n_with_several_images']} {unit} with "
            f"several images have images with different labels; {r['n_with_flagged_images']} "
            f"{unit} have at least one image flagged as likely mislabelled"
        )
    detail = " and ".join(
        f"{r['n_with_conflicting_labels']} {'patients' if c == 'patient_key' else 'studies'}"
        for c, r in rollups.items()
    )
    return [
        Finding(
            check=NAME, severity="info",
            title=TITLE_ROLLUP.format(detail=detail),
            message=(
                "; ".join(parts) + ". Different labels within one exam can be genuine (e.g. "
                "one image per lesion) or a sign that labels were attached to the wrong image."
            ),
            evidence={
                "rollups": list(rollups.values()),
                "method": "group images by patient_key (and study_key); count distinct given "
                "labels and images flagged by the label-issue filter",
            },
            sample_ids=[str(ids[i]) for i in rows],
            recommendation=(
                "Check that labels are defined at the level they were assigned (image, "
                "lesion, exam) and that images of conflicting exams are linked to the right "
                "report."
            ),
            references=["CLAIM:reference-standard", "CLAIM:annotation"],
        )
    ]


def weak_model_wording(finding: Finding, quality: Any) -> Finding:
    """The noise-rate finding reworded as an upper bound when the model is weak.

    Called by the engine (:func:`audit.engine.apply_model_quality`) for the
    findings of this check when the model-quality rule
    (:mod:`audit.model_quality`) says the model is weak; the engine then caps
    the severity at ``warning``. The roll-up finding has no number resting on
    the model's quality beyond its flags, so only the noise-rate finding is
    reworded (the roll-up gets the rule's reason appended).

    Parameters
    ----------
    finding : Finding
        A finding of :func:`check_label_issues`.
    quality : audit.model_quality.ModelQuality
        The weak verdict and its reason.

    Returns
    -------
    Finding
    """
    import dataclasses

    ev = finding.evidence
    if "noise_rate" not in ev:
        return dataclasses.replace(finding, message=f"{finding.message} The flags come from a "
                                   f"weak model ({quality.reason}); many may be its own mistakes.")
    rate = Estimate.from_dict(ev["noise_rate"])
    fmt = {"rate": rate.estimate, "low": rate.low, "high": rate.high, "level": rate.level}
    return dataclasses.replace(
        finding,
        title=TITLE_UPPER_BOUND.format(**fmt),
        message=MESSAGE_UPPER_BOUND.format(**fmt, reason=quality.reason,
                                           n_issues=ev["n_label_issues"]),
        recommendation=RECOMMEND_UPPER_BOUND,
        evidence={**ev, "noise_rate_is": "upper bound (weak model)"},
    )


def sample_table(ctx: AuditContext, config: LabelIssuesConfig) -> pd.DataFrame:
    """The full per-image table behind the findings (they list the top ``max_listed``).

    Parameters
    ----------
    ctx : AuditContext
        Needs ``pred_probs`` ``(N, K)``.
    config : LabelIssuesConfig
        The filter and ranking settings of the audit.

    Returns
    -------
    pandas.DataFrame
        N rows in manifest order: ``sample_id``, ``patient_key``, ``given_label_name``,
        ``suggested_label_name``, then the columns of :func:`label_issue_table`
        (``is_label_issue``, ``label_quality_score``, ``issue_rank`` ...).
    """
    k = ctx.n_classes
    p = check_pred_probs(ctx.get("pred_probs"), n_samples=ctx.n, n_classes=k,
                         row_names=ctx.sample_ids)
    y = check_labels(ctx.labels, n_classes=k, name="manifest column 'label'")
    table = label_issue_table(
        y, p, filter_by=config.filter_by, rank_by=config.rank_by,
        adjust_pred_probs=config.adjust_pred_probs,
        min_examples_per_class=config.min_examples_per_class, n_jobs=config.n_jobs,
    )
    names = np.asarray(ctx.class_names, dtype=object)
    front = pd.DataFrame({
        "sample_id": ctx.sample_ids,
        "patient_key": ctx.manifest["patient_key"].astype(str).to_numpy(),
        "given_label_name": names[table["given_label"].to_numpy()],
        "suggested_label_name": names[table["suggested_label"].to_numpy()],
    })  # fmt: skip
    return pd.concat([front, table], axis=1)


SPEC = CheckSpec(
    name=NAME,
    func=check_label_issues,
    config_cls=LabelIssuesConfig,
    requires=("pred_probs",),
    table=sample_table,
    model_based=True,
    weak_model_wording=weak_model_wording,
    description="likely mislabelled images and the label-noise rate (confident learning, cleanlab)",
)
