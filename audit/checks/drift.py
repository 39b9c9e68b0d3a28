"""Check ``drift``: what changed between the reference (training) run and a new batch?

Runs on a run directory that names a reference run (``medaudit predict`` records
the trained run; ``medaudit drift REFERENCE_RUN NEW_RUN`` records any). Four
aspects, each tested against the reference (:mod:`audit.drift`):

* **features**: the model's embeddings of the new images against those of the
  reference images *embedded by the same fold model* (reference rows of fold
  ``embedding_fold``, which that model never trained on, and held-out rows, which
  ``predict`` also embeds with it): a classifier two-sample test and an MMD test,
  both with permutation p-values;
* **metadata mix**: chi-square per categorical manifest column (site, scanner,
  sex, view, DICOM acquisition fields), KS per numeric one (age);
* **image properties**: KS and standardised mean difference per property
  (intensity, contrast, black / saturated fractions, size ...);
* **predicted prevalence**: BBSE and EM (on temperature-calibrated probabilities)
  estimates of the new batch's prevalence, against the reference's (``estimator``
  decides, BBSE by default), from source and target rows scored alike
  (:func:`audit.prevalence.estimator_inputs`: each fold model's scores of the batch,
  ``pred_probs_by_fold``, against the reference's out-of-fold rows when the batch
  has them).

The p-values of the first three aspects are adjusted (Holm within the feature
tests and within the metadata + property tests, Bonferroni across the two), so
that the chance of any false alarm on a batch from the reference distribution
stays at ``alpha``; the prevalence is flagged when its ``1 - prevalence_alpha``
interval excludes the reference prevalence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from audit.check_spec import CheckSpec
from audit.context import AuditContext, ReferenceRun, annotator_columns
from audit.drift import classifier_two_sample_test, column_tests, holm, mmd_test, reduce_features
from audit.findings import Finding
from audit.prevalence import (
    MSG_BIASED_SOURCE,
    MSG_NOT_ESTIMABLE,
    discriminates,
    estimate_prevalence,
    estimator_inputs,
)
from audit.recalibration import apply_calibrator, fit_calibrator

__all__ = ["DriftConfig", "check_drift"]

NAME = "drift"
_REFS = ["GMLP-8", "GMLP-3", "EU-AI-Act-10(4)"]
#: Manifest columns never compared (identifiers, labels, row names).
EXCLUDED_COLUMNS = ("sample_id", "label", "label_name", "patient_key", "study_key", "path", "split")


@dataclass(frozen=True)
class DriftConfig:
    """Settings of the ``drift`` check.

    Attributes
    ----------
    alpha : float
        Family-wise error rate of the feature, metadata and property tests.
    n_perm : int
        Permutations of the feature tests (p-value resolution ``1 / (n_perm + 1)``,
        which must be below ``alpha / 4`` for a drift to be detectable at all).
    max_rows : int
        Rows per sample in the feature tests (random subsample above).
    pca_components : int
        Dimensions the embeddings are reduced to before the feature tests.
    embedding_fold : int
        Fold whose model embedded the new batch (``medaudit predict`` default 0).
    max_levels : int
        Categorical columns with more levels are not compared.
    prevalence_alpha : float
        1 - confidence level of the prevalence interval that must exclude the
        reference prevalence (0.01: a stricter bar, as it adds to the Holm family).
    estimator : {'bbse', 'em'}
        Estimate whose interval decides (BBSE by default; see ``prevalence_shift``).
    n_boot : int
        Bootstrap replicates of the prevalence intervals.
    seed : int
    """

    alpha: float = 0.05
    n_perm: int = 200
    max_rows: int = 1000
    pca_components: int = 32
    embedding_fold: int = 0
    max_levels: int = 30
    prevalence_alpha: float = 0.01
    estimator: Literal["em", "bbse"] = "bbse"
    n_boot: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1 or not 0 < self.prevalence_alpha < 1:
            raise ValueError("drift alpha and prevalence_alpha must be in (0, 1)")
        if (1 / (self.n_perm + 1)) * 4 >= self.alpha:
            raise ValueError(
                f"drift n_perm must exceed 4 / alpha - 1 = {4 / self.alpha - 1:.0f} "
                f"(smaller permutation p-values are needed); got {self.n_perm}"
            )


def _subsample(rng: np.random.Generator, n: int, cap: int) -> np.ndarray:
    return np.sort(rng.choice(n, cap, replace=False)) if n > cap else np.arange(n)


def _feature_tests(
    ref: ReferenceRun, emb: np.ndarray, config: DriftConfig
) -> dict[str, Any] | None:
    if ref.embeddings is None:
        return None
    rows = np.arange(len(ref.embeddings))
    if ref.folds is not None and (ref.folds >= 0).any():
        rows = np.flatnonzero((ref.folds == config.embedding_fold) | (ref.folds < 0))
    ra = np.asarray(ref.embeddings, np.float64)[rows]
    nb = np.asarray(emb, np.float64)
    ok_a, ok_b = np.isfinite(ra).all(1), np.isfinite(nb).all(1)
    ra, nb = ra[ok_a], nb[ok_b]
    if len(ra) < 10 or len(nb) < 10 or ra.shape[1] != nb.shape[1]:
        return None
    rng = np.random.default_rng(config.seed)
    ra = ra[_subsample(rng, len(ra), config.max_rows)]
    nb = nb[_subsample(rng, len(nb), config.max_rows)]
    xa, xb = reduce_features(ra, nb, n_components=config.pca_components, seed=config.seed)
    return {
        "n_reference": len(xa),
        "n_new": len(xb),
        "reference_rows": f"folds == {config.embedding_fold} or -1 (embedded by the same model)"
        if ref.folds is not None and (ref.folds >= 0).any()
        else "all",
        "c2st": classifier_two_sample_test(xa, xb, n_perm=config.n_perm, seed=config.seed),
        "mmd": mmd_test(xa, xb, n_perm=config.n_perm, seed=config.seed),
    }


def _metadata_columns(ref: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    skip = set(EXCLUDED_COLUMNS) | set(annotator_columns(ref.columns))
    return [c for c in ref.columns if c in new.columns and c not in skip]


def _prevalence(
    ref: ReferenceRun,
    probs: np.ndarray,
    groups: np.ndarray,
    config: DriftConfig,
    by_fold: np.ndarray | None = None,
) -> dict[str, Any] | None:
    if ref.pred_probs is None:
        return None
    inputs = estimator_inputs(
        ref.labels,
        np.asarray(ref.pred_probs, np.float64),
        ref.groups,
        ref.folds,
        probs,
        groups,
        target_by_fold=by_fold,
    )
    y, p, g = inputs.source_labels, inputs.source_probs, inputs.source_groups
    k = p.shape[1]
    counts = np.bincount(y, minlength=k)
    if len(y) < 20 or (counts == 0).any() or not len(inputs.target_probs):
        return None
    pt, gt = inputs.target_probs, inputs.target_groups
    c = 1 if k == 2 else int(np.argmin(counts))
    ok_model, auc = discriminates(y, p, groups=g)
    if not ok_model:
        return {
            "class_index": c,
            "estimable": False,
            "reference_auc": auc.to_dict(),
            "reason": MSG_NOT_ESTIMABLE.format(auc=auc.estimate, low=auc.low, high=auc.high),
        }
    cal = fit_calibrator("temperature", y, p)
    em = estimate_prevalence(
        apply_calibrator(cal, pt),
        method="em",
        source_prior=counts / counts.sum(),
        target_groups=gt,
        n_boot=config.n_boot,
        alpha=config.prevalence_alpha,
        seed=config.seed,
    )[c]
    bbse = estimate_prevalence(
        pt,
        method="bbse",
        source_labels=y,
        source_probs=p,
        source_folds=inputs.source_folds,
        target_groups=gt,
        source_groups=g,
        n_boot=config.n_boot,
        alpha=config.prevalence_alpha,
        seed=config.seed,
    )[c]
    ref_prev = float(counts[c] / counts.sum())
    main = em if config.estimator == "em" else bbse
    return {
        "class_index": c,
        "reference_prevalence": round(ref_prev, 4),
        "em": em.to_dict(),
        "bbse": bbse.to_dict(),
        "mean_predicted": round(float(probs[np.isfinite(probs).all(1), c].mean()), 4),
        "reference_mean_predicted": round(float(p[:, c].mean()), 4),
        "estimator": config.estimator,
        "drifted": bool(np.isfinite(main.low) and not main.low <= ref_prev <= main.high),
        "estimable": True,
        "reference_auc": auc.to_dict(),
        "calibrator": cal,
        "estimator_source": inputs.source,
        "estimator_source_detail": inputs.description,
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def check_drift(ctx: AuditContext, config: DriftConfig) -> list[Finding]:
    """Compare this run (a new batch) with its reference run (see the module docstring).

    Parameters
    ----------
    ctx : AuditContext
        Needs ``reference``; uses ``embeddings``, ``image_properties`` and
        ``pred_probs`` where both runs have them.
    config : DriftConfig

    Returns
    -------
    list of Finding
        One per aspect that could be tested (``pass`` when it did not drift).
    """
    ref: ReferenceRun = ctx.get("reference")
    if list(ref.class_names) != list(ctx.class_names):
        raise ValueError(
            f"the reference run's classes {ref.class_names} differ from this run's "
            f"{ctx.class_names}; drift compares runs of one model"
        )
    tests: list[tuple[str, str, float]] = []  # (aspect, name, p)

    features = _feature_tests(ref, ctx.get("embeddings"), config) if ctx.has("embeddings") else None
    if features:
        tests += [
            ("features", "c2st", features["c2st"]["p_value"]),
            ("features", "mmd", features["mmd"]["p_value"]),
        ]
    meta = column_tests(
        ref.manifest,
        ctx.manifest,
        _metadata_columns(ref.manifest, ctx.manifest),
        max_levels=config.max_levels,
    )
    tests += [("metadata", m["column"], m["p_value"]) for m in meta]
    props: list[dict[str, Any]] = []
    if ref.image_properties is not None and ctx.has("image_properties"):
        new_props = ctx.get("image_properties")
        cols = [
            c
            for c in ref.image_properties.columns
            if c != "sample_id"
            and c in new_props.columns
            and pd.api.types.is_numeric_dtype(ref.image_properties[c])
        ]
        props = column_tests(ref.image_properties, new_props, cols, max_levels=0)
        tests += [("properties", m["column"], m["p_value"]) for m in props]
    # alpha is split between two families: the feature tests and the metadata + property
    # tests (Bonferroni across the two, Holm within each): the family-wise error stays at
    # alpha and the two permutation p-values need only n_perm >= 4 / alpha - 1.
    fams = [[t for t in tests if t[0] == "features"], [t for t in tests if t[0] != "features"]]
    n_fam = sum(1 for f in fams if f)
    adjusted = {}
    for fam in fams:
        adj = holm([p for *_, p in fam])
        adjusted.update(
            {(a, n): min(1.0, v * n_fam) for (a, n, _), v in zip(fam, adj, strict=True)}
        )
    for m in meta:
        m["p_value"] = round(m["p_value"], 6)
        m["p_holm"] = round(adjusted[("metadata", m["column"])], 6)
    for m in props:
        m["p_value"] = round(m["p_value"], 6)
        m["p_holm"] = round(adjusted[("properties", m["column"])], 6)

    findings: list[Finding] = []
    common = {
        "reference_run": ref.name,
        "n_reference": len(ref.manifest),
        "n_new": ctx.n,
        "alpha": config.alpha,
        "adjustment": f"Holm within the feature tests ({len(fams[0])}) and the metadata + "
        f"property tests ({len(fams[1])}), Bonferroni across the {n_fam} families",
    }
    if features:
        p_c2st, p_mmd = adjusted[("features", "c2st")], adjusted[("features", "mmd")]
        features["c2st"]["p_holm"], features["mmd"]["p_holm"] = round(p_c2st, 6), round(p_mmd, 6)
        drifted = min(p_c2st, p_mmd) < config.alpha
        auc = features["c2st"]["auc"]
        findings.append(
            Finding(
                check=NAME,
                severity="warning" if drifted else "pass",
                title=(
                    f"The model sees the new images differently (two-sample AUC {auc:.2f})"
                    if drifted
                    else "No shift in the model's features of the new images"
                ),
                message=(
                    f"A classifier told the new images from the reference images with a "
                    f"cross-validated AUC of {auc:.2f} (0.5 means indistinguishable; permutation "
                    f"p = {features['c2st']['p_value']}, MMD p = {features['mmd']['p_value']}, "
                    f"before adjusting for {len(tests)} tests). "
                    + (
                        "The images differ in ways the model notices; its accuracy on them is not "
                        "established by the cross-validation."
                        if drifted
                        else "The model's features of the new batch look like those of the reference."
                    )
                ),
                evidence={**common, **features, "method": "C2ST and MMD on PCA-reduced embeddings"},
                recommendation=(
                    "Label a sample of the new images and measure the model on it before "
                    "relying on it; check acquisition (scanner, protocol) changes."
                    if drifted
                    else "Repeat the check on every new batch."
                ),
                references=_REFS,
            )
        )
    sig_meta = [m for m in meta if m["p_holm"] < config.alpha]
    if meta:
        names = ", ".join(f"{m['column']} ({m['effect_name']} {m['effect']:.2f})" for m in sig_meta)
        findings.append(
            Finding(
                check=NAME,
                severity="warning" if sig_meta else "pass",
                title=(
                    f"The metadata mix changed: {names}"
                    if sig_meta
                    else f"No change in the metadata mix ({len(meta)} column(s) compared)"
                ),
                message=(
                    f"{len(sig_meta)} of {len(meta)} metadata column(s) differ between the "
                    "reference and the new batch beyond chance (chi-square / KS, Holm-adjusted)"
                    + (f": {names}." if sig_meta else ".")
                ),
                evidence={
                    **common,
                    "columns": meta,
                    "method": "chi-square (categorical) / KS (numeric) per column, Holm",
                },
                recommendation=(
                    "Check that the model was validated on the new sites / scanners / "
                    "population before using it there."
                    if sig_meta
                    else ""
                ),
                references=_REFS,
            )
        )
    sig_props = sorted(
        [m for m in props if m["p_holm"] < config.alpha], key=lambda m: -abs(m.get("smd", 0.0))
    )
    if props:
        names = ", ".join(f"{m['column']} (SMD {m['smd']:+.2f})" for m in sig_props[:5])
        findings.append(
            Finding(
                check=NAME,
                severity="warning" if sig_props else "pass",
                title=(
                    f"The images changed: {names}"
                    if sig_props
                    else f"No change in image properties ({len(props)} compared)"
                ),
                message=(
                    f"{len(sig_props)} of {len(props)} image properties differ between the "
                    "reference and the new batch beyond chance (KS, Holm-adjusted)"
                    + (
                        f"; largest standardised differences: {names}. This is what another "
                        "scanner, detector or processing setting looks like."
                        if sig_props
                        else "."
                    )
                ),
                evidence={**common, "properties": props, "method": "KS per property, Holm"},
                recommendation=(
                    "Find out what changed in acquisition or preprocessing; harmonise it "
                    "or validate the model on the new images."
                    if sig_props
                    else ""
                ),
                references=_REFS,
            )
        )
    # Prevalence estimators (EM, BBSE) assume only the label mix changed; when the images
    # themselves drifted (features or image properties), their estimate is not to be trusted.
    images_drifted = any(
        f.severity == "warning" and ("c2st" in f.evidence or "properties" in f.evidence)
        for f in findings
    )
    if ctx.has("pred_probs"):
        groups = ctx.manifest["patient_key"].astype(str).to_numpy()
        by_fold = ctx.get("pred_probs_by_fold") if ctx.has("pred_probs_by_fold") else None
        prev = _prevalence(
            ref, np.asarray(ctx.get("pred_probs"), np.float64), groups, config, by_fold
        )
        if prev is not None and not prev["estimable"]:
            findings.append(
                Finding(
                    check=NAME,
                    severity="info",
                    title="Predicted prevalence not estimable",
                    message=prev["reason"][0].upper() + prev["reason"][1:] + ".",
                    evidence={**common, **prev, "method": "AUC with 95% CI on the reference rows"},
                    references=_REFS,
                )
            )
        elif prev is not None:
            main = prev[config.estimator]
            other = prev["em" if config.estimator == "bbse" else "bbse"]
            names = {"em": "EM after Saerens et al. 2002", "bbse": "BBSE after Lipton et al. 2018"}
            cname = ctx.class_names[prev["class_index"]]
            level = round(100 * (1 - config.prevalence_alpha))
            findings.append(
                Finding(
                    check=NAME,
                    severity="warning" if prev["drifted"] else "pass",
                    title=(
                        f"Predicted prevalence of {cname!r} "
                        + ("changed" if prev["drifted"] else "unchanged")
                        + f": {_pct(main['estimate'])} vs {prev['reference_prevalence']:.1%} in "
                        "the reference"
                    ),
                    message=(
                        f"From the model's predictions, about {_pct(main['estimate'])} of the "
                        f"new batch are {cname!r} ({level}% CI {_pct(main['ci_low'])} to "
                        f"{_pct(main['ci_high'])}, {names[config.estimator]}; "
                        f"{'EM' if config.estimator == 'bbse' else 'BBSE'} "
                        f"{_pct(other['estimate'])}), against "
                        f"{prev['reference_prevalence']:.1%} in the reference. "
                        + (
                            "PPV and NPV change with it (see prevalence_shift)."
                            if prev["drifted"]
                            else "No change beyond chance."
                        )
                        + (
                            MSG_BIASED_SOURCE
                            if prev["estimator_source"] == "oof_vs_ensemble"
                            else ""
                        )
                        + (
                            " The images themselves changed (see the feature / image findings), "
                            "which breaks the assumption of both estimators that only the mix "
                            "of classes changes: treat this estimate as unreliable and count "
                            "the prevalence on labeled cases."
                            if images_drifted
                            else ""
                        )
                    ),
                    evidence={
                        **common,
                        **prev,
                        "method": "EM on temperature-calibrated "
                        "probabilities and BBSE, patient bootstrap (source and target: "
                        f"{prev['estimator_source_detail']})",
                        "label_shift_assumption_violated": images_drifted,
                    },
                    recommendation=(
                        "Recompute PPV/NPV at the new prevalence (medaudit audit "
                        "--deployment-prevalence) and confirm it with labeled cases."
                        if prev["drifted"]
                        else ""
                    ),
                    references=_REFS,
                )
            )
    return findings


SPEC = CheckSpec(
    name=NAME,
    func=check_drift,
    config_cls=DriftConfig,
    requires=("reference",),
    description="shift from the reference run: features (C2ST, MMD), metadata, image "
    "properties, predicted prevalence",
    model_based=True,
    needs_labels=False,
)
