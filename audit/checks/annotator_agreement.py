"""Check ``annotator_agreement``: how far independent readers agree, and on what.

Runs when the manifest has annotator columns ``label_<annotator>`` (a class
index or class name per image, missing where that reader did not read the
image). It reports

* chance-corrected agreement: Fleiss' kappa over all readers (bootstrap
  interval over images) and Cohen's kappa for every pair of readers
  (Fleiss-Cohen-Everitt interval), with the verbal band of McHugh (2012);
* a consensus label per image and a quality score per reader: CROWDLAB
  (Goh, Tkachenko & Mueller 2022, arXiv:2210.06812;
  :func:`cleanlab.multiannotator.get_label_quality_multiannotator`) when
  out-of-fold ``pred_probs`` exist, which weighs each reader and the model by
  their estimated accuracy; majority vote otherwise;
* images whose training label (manifest ``label``) differs from the consensus.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from audit.check_spec import CheckSpec
from audit.context import ANNOTATOR_PREFIX, AuditContext
from audit.findings import Finding
from audit.stats import (
    Estimate,
    cohen_kappa_ci,
    finite_or_none,
    fleiss_kappa_ci,
    interpret_kappa,
    ratings_to_counts,
    wilson_ci,
)
from audit.validation import check_pred_probs

__all__ = [
    "AnnotatorAgreementConfig",
    "annotator_matrix",
    "check_annotator_agreement",
    "consensus_labels",
]

NAME = "annotator_agreement"

_REFS = ["CLAIM:annotation", "CLAIM:rater-variability", "CLAIM:reference-standard", "GMLP-5"]

BAD_ANNOTATION = (
    "annotator column {column!r} has {value!r} at row {row} (sample_id {sample_id!r}); "
    "expected a class index in [0, {k}) or a class name in {names}, or empty where the "
    "annotator did not read the image"
)
TITLE_AGREEMENT = (
    "Inter-annotator agreement: Fleiss' kappa {kappa:.2f} ({level:.0%} CI {low:.2f} to "
    "{high:.2f}), {band}"
)
TITLE_NOT_ESTIMABLE = "Inter-annotator agreement not estimable"
TITLE_READER = "{n} annotator(s) agree weakly with the others"
TITLE_GIVEN = "Training label differs from the annotators' consensus on {n} images ({rate:.1%})"


@dataclass(frozen=True)
class AnnotatorAgreementConfig:
    """Settings of the ``annotator_agreement`` check.

    Attributes
    ----------
    warn_kappa : float
        Agreement below which the finding is a warning. 0.60: McHugh (2012,
        Biochem Med 22:276) calls kappa of 0.40-0.59 "weak" agreement, with
        only 15-35 % of the data reliable, and argues this is inadequate for
        health data; Landis & Koch (1977) put 0.61 as the start of
        "substantial" agreement.
    critical_kappa : float
        Agreement below which the finding is critical. 0.40: below it McHugh
        calls agreement "minimal" (4-15 % of the data reliable); a
        reference standard this unreliable cannot support accuracy claims.
    min_items_per_pair : int
        Pairs of readers who read fewer images in common are listed but not
        used to judge severity (a kappa from a handful of images has an
        interval spanning most of [-1, 1]).
    consensus_method : {'best_quality', 'majority_vote'}
        cleanlab consensus: ``'best_quality'`` (CROWDLAB posterior argmax) or
        plain majority vote (ties broken by the model, then class frequency).
    use_pred_probs : bool
        Use out-of-fold ``pred_probs`` when present (CROWDLAB). Without them
        the consensus is a majority vote and reader quality is the agreement
        with it.
    warn_label_disagreement : float
        Share of images whose training label differs from the consensus above
        which that finding is a warning (5 %, as for ``label_issues``).
    n_boot : int
        Bootstrap replicates for Fleiss' kappa.
    ci_level : float
        Confidence level.
    seed : int
        Bootstrap seed.
    max_listed : int
        Images listed in ``sample_ids`` and the evidence.
    """

    warn_kappa: float = 0.60
    critical_kappa: float = 0.40
    min_items_per_pair: int = 20
    consensus_method: Literal["best_quality", "majority_vote"] = "best_quality"
    use_pred_probs: bool = True
    warn_label_disagreement: float = 0.05
    n_boot: int = 1000
    ci_level: float = 0.95
    seed: int = 0
    max_listed: int = 100

    def __post_init__(self) -> None:
        if not -1 <= self.critical_kappa <= self.warn_kappa <= 1:
            raise ValueError(
                "annotator_agreement needs -1 <= critical_kappa <= warn_kappa <= 1; got "
                f"{self.critical_kappa} and {self.warn_kappa}"
            )
        if not 0 < self.ci_level < 1 or self.n_boot < 1 or self.min_items_per_pair < 2:
            raise ValueError(
                "annotator_agreement needs 0 < ci_level < 1, n_boot >= 1, min_items_per_pair >= 2"
            )


def annotator_matrix(
    manifest: pd.DataFrame, class_names: list[str], columns: list[str]
) -> np.ndarray:
    """Annotators' labels as class indices.

    Parameters
    ----------
    manifest : pandas.DataFrame
        N rows with the annotator ``columns``.
    class_names : list of str
        K names; values may be class names or indices (ints, floats such as
        ``1.0``, or digit strings).
    columns : list of str
        M annotator columns.

    Returns
    -------
    numpy.ndarray
        Shape ``(N, M)`` float: class index, ``nan`` where not annotated.

    Raises
    ------
    ValueError
        For a value that is neither (see :data:`BAD_ANNOTATION`).
    """
    k = len(class_names)
    by_name = {str(n): float(i) for i, n in enumerate(class_names)}
    out = np.full((len(manifest), len(columns)), np.nan)
    for j, col in enumerate(columns):
        raw = manifest[col]
        if pd.api.types.is_bool_dtype(raw):
            vals = pd.Series(np.nan, index=raw.index)
            bad = raw.notna().to_numpy()
        elif pd.api.types.is_numeric_dtype(raw):
            vals = raw.astype(float)
            bad = np.zeros(len(raw), dtype=bool)
        else:
            text = raw.astype("string").str.strip()
            missing = text.isna() | text.str.lower().isin(["", "nan", "na", "none"])
            named = text.map(by_name)
            numeric = pd.to_numeric(text.where(named.isna()), errors="coerce")
            vals = named.astype(float).fillna(numeric.astype(float)).where(~missing)
            bad = (vals.isna() & ~missing).to_numpy(dtype=bool).copy()
        v = vals.to_numpy(dtype=float, na_value=np.nan).copy()
        present = ~np.isnan(v)
        bad |= present & ((v != np.round(v)) | (v < 0) | (v >= k))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                BAD_ANNOTATION.format(column=col, value=raw.iloc[i], row=i,
                                      sample_id=str(manifest["sample_id"].iloc[i]), k=k,
                                      names=list(class_names))
            )
        out[:, j] = v
    return out


def consensus_labels(
    ratings: np.ndarray,
    pred_probs: np.ndarray | None = None,
    *,
    consensus_method: Literal["best_quality", "majority_vote"] = "best_quality",
    annotator_names: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Consensus label per item and quality per annotator.

    Parameters
    ----------
    ratings : numpy.ndarray
        Shape ``(N, M)`` class indices with ``nan``; every row has at least one
        rating, every column at least one.
    pred_probs : numpy.ndarray, optional
        Shape ``(N, K)`` out-of-sample probabilities; enables CROWDLAB.
    consensus_method : {'best_quality', 'majority_vote'}
        See :class:`AnnotatorAgreementConfig`.
    annotator_names : list of str, optional
        M names (default ``a0, a1, ...``).

    Returns
    -------
    items : pandas.DataFrame
        N rows: ``consensus_label``, ``consensus_quality_score`` (CROWDLAB, or
        the share of ratings that agree with the consensus), ``annotator_agreement``,
        ``num_annotations``.
    annotators : pandas.DataFrame
        M rows indexed by name: ``annotator_quality`` (CROWDLAB; ``nan``
        without ``pred_probs``), ``agreement_with_consensus``,
        ``num_examples_labeled``.
    method : str
        What was used.
    """
    from cleanlab.multiannotator import get_label_quality_multiannotator, get_majority_vote_label

    r = np.asarray(ratings, dtype=float)
    names = annotator_names or [f"a{j}" for j in range(r.shape[1])]
    frame = pd.DataFrame(r, columns=names)
    n_ann = (~np.isnan(r)).sum(axis=1)
    if pred_probs is not None and (n_ann >= 2).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = get_label_quality_multiannotator(
                frame, pred_probs, consensus_method=consensus_method, quality_method="crowdlab",
                return_detailed_quality=False, verbose=False,
            )
        items = res["label_quality"].reset_index(drop=True)
        stats = res["annotator_stats"]
        annotators = pd.DataFrame(
            {
                "annotator_quality": stats["annotator_quality"],
                "agreement_with_consensus": stats["agreement_with_consensus"],
                "num_examples_labeled": stats["num_examples_labeled"],
            }
        ).reindex(names)
        method = (
            "CROWDLAB (cleanlab.multiannotator.get_label_quality_multiannotator, "
            f"consensus_method={consensus_method!r}) with out-of-fold pred_probs"
        )
        return items, annotators, method
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        consensus = np.asarray(get_majority_vote_label(frame, verbose=False), dtype=np.int64)
    rated = ~np.isnan(r)
    agree = (r == consensus[:, None]) & rated
    items = pd.DataFrame(
        {
            "consensus_label": consensus,
            "consensus_quality_score": agree.sum(1) / np.maximum(n_ann, 1),
            "annotator_agreement": np.where(
                n_ann > 1, (agree.sum(1) - 1) / np.maximum(n_ann - 1, 1), np.nan
            ),
            "num_annotations": n_ann,
        }
    )
    annotators = pd.DataFrame(
        {
            "annotator_quality": np.nan,
            "agreement_with_consensus": agree.sum(0) / np.maximum(rated.sum(0), 1),
            "num_examples_labeled": rated.sum(0),
        },
        index=names,
    )
    method = "majority vote (cleanlab.multiannotator.get_majority_vote_label); no pred_probs"
    return items, annotators, method


def _pairwise(ratings: np.ndarray, names: list[str], k: int, alpha: float,
              min_items: int) -> list[dict[str, Any]]:
    out = []
    for a, b in itertools.combinations(range(ratings.shape[1]), 2):
        both = ~np.isnan(ratings[:, a]) & ~np.isnan(ratings[:, b])
        n = int(both.sum())
        row: dict[str, Any] = {"annotator_a": names[a], "annotator_b": names[b], "n_items": n}
        if n >= 2:
            ra, rb = ratings[both, a].astype(int), ratings[both, b].astype(int)
            est = cohen_kappa_ci(ra, rb, n_classes=k, alpha=alpha)
            row.update(
                {"kappa": finite_or_none(est.estimate, 4), "ci_low": finite_or_none(est.low, 4),
                 "ci_high": finite_or_none(est.high, 4), "percent_agreement": finite_or_none(np.mean(ra == rb), 4),
                 "band": interpret_kappa(est.estimate), "used_for_severity": n >= min_items}
            )
        else:
            row.update({"kappa": None, "ci_low": None, "ci_high": None,
                        "percent_agreement": None, "band": "not estimable",
                        "used_for_severity": False})
        out.append(row)
    return out


def check_annotator_agreement(
    ctx: AuditContext, config: AnnotatorAgreementConfig
) -> list[Finding]:
    """Agreement between annotators, consensus labels and reader quality.

    Parameters
    ----------
    ctx : AuditContext
        Manifest with ``label_<annotator>`` columns; ``pred_probs`` ``(N, K)``
        used when present and ``config.use_pred_probs``.
    config : AnnotatorAgreementConfig
        Settings.

    Returns
    -------
    list of Finding
        Overall agreement (severity from Fleiss' kappa), weak readers (when
        any) and training labels that differ from the consensus (when any).

    Raises
    ------
    ValueError
        When an annotator value is neither a class index nor a class name.
    """
    cols = ctx.annotator_columns
    names = [c[len(ANNOTATOR_PREFIX):] for c in cols]
    k = ctx.n_classes
    ratings = annotator_matrix(ctx.manifest, ctx.class_names, cols)
    used_ann = ~np.isnan(ratings).all(axis=0)  # drop annotators who read nothing
    ratings = ratings[:, used_ann]
    names = [n for n, u in zip(names, used_ann) if u]
    n_per_item = (~np.isnan(ratings)).sum(axis=1)
    rated = n_per_item >= 1
    multi = n_per_item >= 2
    alpha = 1 - config.ci_level
    if ratings.shape[1] < 2 or not multi.any():
        return [
            Finding(
                check=NAME, severity="info", title=TITLE_NOT_ESTIMABLE,
                message=(
                    f"Found {ratings.shape[1]} annotator column(s) with labels, but no image was "
                    "read by two annotators, so agreement between readers cannot be measured."
                ),
                evidence={"annotators": names, "n_items_rated": int(rated.sum()),
                          "n_items_with_two_or_more_ratings": int(multi.sum()),
                          "method": "Fleiss' kappa needs items with >= 2 ratings"},
                recommendation="Have a sample of images read independently by a second reader "
                "and report inter-reader agreement (CLAIM).",
                references=["CLAIM:rater-variability"],
            )
        ]
    counts = ratings_to_counts(ratings, k)
    fleiss: Estimate = fleiss_kappa_ci(counts, n_boot=config.n_boot, alpha=alpha, seed=config.seed)
    pairs = _pairwise(ratings, names, k, alpha, config.min_items_per_pair)

    pred_probs = None
    if config.use_pred_probs and ctx.has("pred_probs"):
        pred_probs = check_pred_probs(ctx.get("pred_probs"), n_samples=ctx.n, n_classes=k)
    idx = np.flatnonzero(rated)
    items, annotators, cons_method = consensus_labels(
        ratings[idx], None if pred_probs is None else pred_probs[idx],
        consensus_method=config.consensus_method, annotator_names=names,
    )
    # mean pairwise kappa per annotator (pairs with enough shared items)
    for name in names:
        ks = [p["kappa"] for p in pairs if name in (p["annotator_a"], p["annotator_b"])
              and p["used_for_severity"] and p["kappa"] is not None]
        annotators.loc[name, "mean_pairwise_kappa"] = float(np.mean(ks)) if ks else np.nan

    ids = ctx.sample_ids
    disagree = items["annotator_agreement"].to_numpy() < 1
    disagree &= items["num_annotations"].to_numpy() >= 2
    order = np.argsort(items["consensus_quality_score"].to_numpy(), kind="stable")
    disagree_rows = [int(idx[i]) for i in order if disagree[i]]

    kappa = fleiss.estimate
    band = interpret_kappa(kappa)
    if not np.isfinite(kappa):
        severity = "info"
    elif kappa < config.critical_kappa:
        severity = "critical"
    elif kappa < config.warn_kappa:
        severity = "warning"
    else:
        severity = "pass"
    ann_table = [
        {"annotator": n, "n_items": int(r.num_examples_labeled),
         "annotator_quality": finite_or_none(r.annotator_quality, 4),
         "agreement_with_consensus": finite_or_none(r.agreement_with_consensus, 4),
         "mean_pairwise_kappa": finite_or_none(r.mean_pairwise_kappa, 4)}
        for n, r in annotators.iterrows()
    ]
    fl = fleiss.to_dict()
    evidence: dict[str, Any] = {
        "n_annotators": len(names),
        "n_items_rated": int(rated.sum()),
        "n_items_with_two_or_more_ratings": int(multi.sum()),
        "ratings_per_item_mean": finite_or_none(n_per_item[rated].mean(), 3),
        "fleiss_kappa": fl,
        "fleiss_band_mchugh": band,
        "fleiss_band_landis_koch": interpret_kappa(kappa, scale="landis-koch"),
        "pairwise_cohen_kappa": pairs,
        "annotators": ann_table,
        "n_items_with_disagreement": len(disagree_rows),
        "consensus_method": cons_method,
        "thresholds": {"warn_kappa": config.warn_kappa, "critical_kappa": config.critical_kappa},
        "method": (
            "Fleiss' kappa (1971; unequal numbers of raters per item) with a percentile "
            "bootstrap over items; pairwise Cohen's kappa with the Fleiss-Cohen-Everitt (1969) "
            "standard error; bands of McHugh (2012)"
        ),
    }
    if severity == "pass":
        message = (
            f"Agreement between readers beyond chance is {band} (Fleiss' kappa {kappa:.2f}, {fleiss.level:.0%} CI "
            f"{fleiss.low:.2f} to {fleiss.high:.2f}) over {int(multi.sum())} images read by two "
            f"or more of {len(names)} readers; {len(disagree_rows)} images had differing reads."
        )
    elif severity == "info":
        message = "Agreement beyond chance could not be estimated (every read used one class)."
    else:
        message = (
            f"Agreement between readers beyond chance is only {band} (Fleiss' kappa {kappa:.2f}, {fleiss.level:.0%} CI "
            f"{fleiss.low:.2f} to {fleiss.high:.2f}; below {config.warn_kappa:.2f} is weak "
            f"agreement for health data). The reference standard is uncertain for the "
            f"{len(disagree_rows)} images with differing reads; accuracy measured against it "
            "is uncertain too."
        )
    findings = [
        Finding(
            check=NAME, severity=severity,  # type: ignore[arg-type]
            title=TITLE_AGREEMENT.format(kappa=kappa, low=fleiss.low, high=fleiss.high, band=band,
                                   level=fleiss.level)
            if np.isfinite(kappa) else TITLE_NOT_ESTIMABLE,
            message=message, evidence=evidence,
            sample_ids=[str(ids[i]) for i in disagree_rows[: config.max_listed]],
            recommendation=(
                "Adjudicate the images with differing reads (a senior reader or a consensus "
                "meeting), refine the labelling instructions, and report inter-reader "
                "agreement with its interval (CLAIM)."
                if severity in ("warning", "critical") else
                "Report this agreement with the reference standard (CLAIM)."
            ),
            references=_REFS,
        )
    ]
    weak = [a for a in ann_table if a["mean_pairwise_kappa"] is not None
            and a["mean_pairwise_kappa"] < config.warn_kappa]
    if weak and severity == "pass":
        findings.append(
            Finding(
                check=NAME, severity="warning", title=TITLE_READER.format(n=len(weak)),
                message=(
                    "Overall agreement is acceptable, but "
                    + ", ".join(f"{a['annotator']} (mean kappa {a['mean_pairwise_kappa']:.2f})"
                                for a in weak)
                    + " agree(s) weakly with the other readers."
                ),
                evidence={"annotators": weak, "threshold": config.warn_kappa,
                          "method": "mean of pairwise Cohen's kappa with the other readers "
                          f"(pairs with >= {config.min_items_per_pair} shared images)"},
                recommendation="Review this reader's labels and training; consider "
                "re-reading their images.",
                references=["CLAIM:annotation", "CLAIM:rater-variability"],
            )
        )
    findings.extend(_given_vs_consensus(ctx, config, idx, items))
    return findings


def _given_vs_consensus(
    ctx: AuditContext, config: AnnotatorAgreementConfig, idx: np.ndarray, items: pd.DataFrame
) -> list[Finding]:
    given = ctx.labels[idx]
    consensus = items["consensus_label"].to_numpy(dtype=np.int64)
    differ = given != consensus
    n_diff = int(differ.sum())
    if n_diff == 0:
        return []
    est = wilson_ci(n_diff, len(idx))
    quality = items["consensus_quality_score"].to_numpy()
    order = np.argsort(-np.where(differ, quality, -np.inf), kind="stable")
    rows = [int(idx[i]) for i in order if differ[i]]
    severity = "warning" if est.estimate > config.warn_label_disagreement else "info"
    names = ctx.class_names
    ids = ctx.sample_ids
    listed = [
        {"sample_id": str(ids[idx[i]]), "given_label": names[int(given[i])],
         "consensus_label": names[int(consensus[i])],
         "consensus_quality_score": finite_or_none(quality[i], 4)}
        for i in order[: config.max_listed] if differ[i]
    ]
    return [
        Finding(
            check=NAME, severity=severity,  # type: ignore[arg-type]
            title=TITLE_GIVEN.format(n=n_diff, rate=est.estimate),
            message=(
                f"On {n_diff} of {len(idx)} images read by the annotators, the label used for "
                "training differs from their consensus. Either the training label came from "
                "another source or it was transcribed wrongly."
            ),
            evidence={"n_differ": n_diff, "n_items": len(idx), "rate": est.to_dict(),
                      "listed": listed, "threshold": config.warn_label_disagreement,
                      "method": "manifest 'label' vs consensus label; Wilson interval"},
            sample_ids=[str(ids[i]) for i in rows[: config.max_listed]],
            recommendation="Check where the training labels come from; use the adjudicated "
            "consensus as the reference standard or document why not.",
            references=["CLAIM:reference-standard", "CLAIM:annotation"],
        )
    ]


SPEC = CheckSpec(
    name=NAME,
    func=check_annotator_agreement,
    config_cls=AnnotatorAgreementConfig,
    requires=(),
    requires_any_column_prefix=ANNOTATOR_PREFIX,
    description="inter-annotator kappa (Cohen, Fleiss) and consensus labels (CROWDLAB)",
)
