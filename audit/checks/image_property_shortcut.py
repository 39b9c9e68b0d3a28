"""Check ``image_property_shortcut``: do cheap image statistics predict the label?

A burned-in marker, a black collimation border, a brighter exposure or a
different bit depth can each separate the classes when they come with one site
or one protocol. This check asks how well each column of
``image_properties.parquet`` (``mean_intensity``, ``contrast``, percentiles,
``border_black_fraction``, ``corner_mark_score``, ``edge_mark_score``,
``has_corner_mark``, size, aspect and bit depth; not ``corner_mark_corner``,
which is a code) predicts the label **alone**, and all of them **together**:

* each property alone: cut into quantile bins (``n_bins``), then the one-column
  model of ``metadata_shortcut`` (out-of-fold class shares of the bin, the run's
  folds), so that non-monotone effects count too; its **AUC** with a
  patient-level 95 % interval, a permutation p-value and Benjamini-Hochberg
  across properties;
* all together: a scikit-learn ``LogisticRegression`` on the standardised
  properties, out-of-fold on the run's folds; its AUC against the baseline
  0.5, and its accuracy against the **majority-class rate** (the share of the
  largest class, never its index), each with its interval;
* the ids of the images with the most extreme values of every flagged
  property, for the report's thumbnails.

**Mediated by site.** When a property only stands in for a metadata group that
itself predicts the label (in the demo the 'R' marker is on site B's images
only), the AUC of the property **within** each level of the group (pairs of the
same site only; :func:`audit._probes.stratified_auc`) falls to about 0.5. Such a
property is reported as *mediated by* that group (``info``: the group's own
finding carries the weight) instead of as a second, unrelated shortcut. The rule:
``|within-group AUC - 0.5| <= mediation_fraction * |AUC - 0.5|`` for a property
whose q-value is below ``alpha`` (whatever its AUC: a weak cue that explains a
site is still worth naming).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from audit._probes import (
    auc_estimate,
    binary_level_null,
    level_rate_scores,
    multiclass_auc,
    permutation_p_value,
    probe_folds,
    stratified_auc,
)
from audit.check_spec import CheckSpec
from audit.checks.metadata_shortcut import MetadataShortcutConfig, metadata_analysis
from audit.context import AuditContext
from audit.findings import Finding
from audit.stats import wilson_ci

__all__ = [
    "SPEC",
    "ImagePropertyShortcutConfig",
    "check_image_property_shortcut",
    "property_analysis",
]

NAME = "image_property_shortcut"

TITLE_FLAGGED = "Image property {prop} alone predicts the label (AUC {auc})"
TITLE_MEDIATED = "Image properties predict the label only through {group} ({props})"
TITLE_PASS = "No image property predicts the label ({n} tested)"
MSG_FLAGGED = (
    "The image statistic '{prop}' alone, without looking at the anatomy, predicts the label with "
    "AUC {auc} (q = {q:.3g}){others}. All image statistics together reach AUC {all_auc}. A "
    "model can learn such a cue (a marker, a border, an exposure setting) instead of the "
    "disease. Look at the images with the most extreme values (listed)."
)
#: Statistics of the whole image's grey levels: they summarise the anatomy and any lesion
#: as much as the acquisition, so a class difference in them can be the disease itself.
CONTENT_PROPERTIES = frozenset(
    {"mean_intensity", "std_intensity", "p01", "p05", "p50", "p95", "p99", "contrast"}
)
MSG_CONTENT = (
    " '{prop}' summarises the grey levels of the whole image, anatomy and lesion included: a "
    "difference between the classes can also be the disease itself (a dark or bright lesion, "
    "denser tissue) rather than an acquisition cue; the listed extremes and the property's "
    "distribution per site or device tell which."
)
TITLE_CONTENT = "The images' grey levels differ between the classes ({prop}: AUC {auc})"
MSG_CONTENT_ONLY = (
    "Whole-image grey-level statistics predict the label weakly: {props}, below the AUC "
    "{thr:.2f} from which a single such statistic is treated as a possible shortcut."
)
MSG_MEDIATED = (
    "The image statistics {props} predict the label (best: '{prop}', AUC {auc}), but only "
    "because they differ between values of {group}: within each {group} they predict nothing "
    "(AUC {strat:.2f}). They are how the {group} shows in the pixels (mediated by {group}), "
    "not a second shortcut; see the {group} finding of metadata_shortcut and "
    "embedding_encodes_metadata."
)
MSG_PASS = (
    "None of the {n} image statistics predicts the label by at least AUC {min_auc:.2f} after "
    "correction for multiple testing; all together they reach AUC {all_auc}."
)
REC_FLAGGED = (
    "Open the listed images. Remove or crop burned-in markers and borders, harmonise intensity "
    "across sources, and check the masking test; report the property's distribution per class."
)
_REFS = [
    "CLAIM:preprocessing",
    "TRIPOD+AI:data-preparation",
    "EU-AI-Act-10(2)(f)",
    "EU-AI-Act-10(2)(g)",
]


@dataclass(frozen=True)
class ImagePropertyShortcutConfig:
    """Settings of :func:`check_image_property_shortcut`.

    Attributes
    ----------
    exclude_properties : tuple of str, default ('corner_mark_corner',)
        Columns that are codes, not measurements.
    n_bins : int, default 10
        Quantile bins of each property for its one-property model (deciles).
    min_auc : float, default 0.60
        Smallest AUC worth a warning (as ``metadata_shortcut``) for acquisition
        properties (markers, borders, size, aspect, bit depth).
    content_min_auc : float, default 0.70
        Smallest AUC worth a warning for the whole-image grey-level statistics
        (:data:`CONTENT_PROPERTIES`); between ``min_auc`` and this they are an
        ``info`` finding. A lesion or a disease changes an image's grey levels
        itself (dark masses on ultrasound, consolidation on a radiograph): on
        unmodified BreastMNIST the median grey level alone separates benign from
        malignant with AUC 0.60-0.62, so at 0.60 this check warned on two thirds
        of clean controls. One global statistic reaching 0.70 ("acceptable"
        discrimination, Hosmer & Lemeshow) without looking at where the lesion
        is deserves a look.
    critical_auc : float, default 0.80
        AUC from which a single statistic is a strong classifier: critical.
    alpha : float, default 0.05
        False-discovery rate (Benjamini-Hochberg across properties).
    mediation_fraction : float, default 0.5
        A property is mediated by a group when its within-group AUC keeps at
        most this share of its distance from 0.5.
    n_permutations : int, default 1000
        Label permutations of each property's null.
    n_extremes : int, default 5
        Images listed at each end of a flagged property.
    n_splits : int, default 5
        Folds when the run has none.
    n_boot : int, default 1000
        Bootstrap replicates of the AUC interval when patients repeat.
    seed : int, default 0
    """

    exclude_properties: tuple[str, ...] = ("corner_mark_corner",)
    n_bins: int = 10
    min_auc: float = 0.60
    content_min_auc: float = 0.70
    critical_auc: float = 0.80
    alpha: float = 0.05
    mediation_fraction: float = 0.5
    n_permutations: int = 1000
    n_extremes: int = 5
    n_splits: int = 5
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.5 <= self.min_auc <= self.critical_auc <= 1:
            raise ValueError(
                f"image_property_shortcut needs 0.5 <= min_auc <= critical_auc <= 1; "
                f"got {self.min_auc} and {self.critical_auc}"
            )
        if not self.min_auc <= self.content_min_auc <= 1:
            raise ValueError(
                f"image_property_shortcut needs min_auc <= content_min_auc <= 1; got "
                f"{self.min_auc} and {self.content_min_auc}"
            )
        if not 0 <= self.mediation_fraction < 1:
            raise ValueError(
                f"image_property_shortcut mediation_fraction must be in [0, 1); got "
                f"{self.mediation_fraction}"
            )
        if self.n_bins < 2:
            raise ValueError(f"image_property_shortcut n_bins must be >= 2; got {self.n_bins}")


def _property_columns(
    props: pd.DataFrame, config: ImagePropertyShortcutConfig
) -> dict[str, np.ndarray]:
    out = {}
    for c in props.columns:
        if c == "sample_id" or c in config.exclude_properties:
            continue
        s = props[c]
        if pd.api.types.is_bool_dtype(s):
            v = s.astype("float64").to_numpy()
        elif pd.api.types.is_numeric_dtype(s):
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            continue
        finite = v[np.isfinite(v)]
        if finite.size < 2 or np.ptp(finite) == 0:
            continue
        out[str(c)] = v
    return out


def _bin_codes(v: np.ndarray, n_bins: int) -> tuple[np.ndarray, int]:
    """Quantile-bin codes of ``v`` (missing values their own bin)."""
    ok = np.isfinite(v)
    uniq = np.unique(v[ok])
    if len(uniq) <= n_bins:
        codes = np.searchsorted(uniq, np.where(ok, v, uniq[0]))
        n = len(uniq)
    else:
        edges = np.unique(np.quantile(v[ok], np.linspace(0, 1, n_bins + 1))[1:-1])
        codes = np.searchsorted(edges, np.where(ok, v, edges[0]), side="left")
        n = len(edges) + 1
    codes = np.where(ok, codes, n)
    return codes.astype(np.int64), n + int((~ok).any())


def _all_together(
    values: dict[str, np.ndarray], y: np.ndarray, folds: np.ndarray, k: int
) -> np.ndarray:
    """Out-of-fold probabilities ``(N, K)`` of a logistic regression on all properties."""
    x = np.column_stack(list(values.values()))
    med = np.nanmedian(x, axis=0)
    x = np.where(np.isfinite(x), x, med)
    out = np.tile(np.bincount(y, minlength=k) / len(y), (len(y), 1))
    for f in np.unique(folds):
        te = folds == f
        tr = ~te if f >= 0 else folds >= 0
        if len(np.unique(y[tr])) < 2:
            continue
        sc = StandardScaler().fit(x[tr])
        clf = LogisticRegression(max_iter=500).fit(sc.transform(x[tr]), y[tr])
        out[np.ix_(np.flatnonzero(te), clf.classes_)] = clf.predict_proba(sc.transform(x[te]))
    return out


def property_analysis(ctx: AuditContext, config: ImagePropertyShortcutConfig) -> dict[str, Any]:
    """Per-property and all-together results (see the module docstring)."""
    props = ctx.get("image_properties")
    y = ctx.labels
    k = ctx.n_classes
    patients = ctx.manifest["patient_key"].astype(str).to_numpy()
    folds = probe_folds(
        y,
        patients,
        ctx.get("folds") if ctx.has("folds") else None,
        n_splits=config.n_splits,
        seed=config.seed,
    )
    values = _property_columns(props, config)
    rng = np.random.default_rng(config.seed)
    label_groups = [
        e
        for e in metadata_analysis(
            ctx,
            MetadataShortcutConfig(
                min_auc=config.min_auc,
                alpha=config.alpha,
                seed=config.seed,
                n_boot=200,
                n_permutations=config.n_permutations,
                critical_auc=max(config.min_auc, 0.8),
                exclude_columns=("sex", "age"),
            ),
        )
        if e["flagged"]
    ]
    entries: list[dict[str, Any]] = []
    sid = ctx.sample_ids
    for name, v in values.items():
        codes, n_lvl = _bin_codes(v, config.n_bins)
        scores = level_rate_scores(codes, y, folds, n_lvl, k)
        auc = auc_estimate(y, scores, patients, n_boot=config.n_boot, seed=config.seed)
        if k == 2:
            null = binary_level_null(codes, y, folds, n_lvl, config.n_permutations, rng)
        else:
            null = np.array(
                [
                    multiclass_auc(
                        level_rate_scores(codes, rng.permutation(y), folds, n_lvl, k), y, k
                    )
                    for _ in range(min(config.n_permutations, 200))
                ]
            )
        order = np.argsort(np.where(np.isfinite(v), v, np.nanmedian(v)), kind="stable")
        n_ext = config.n_extremes
        extremes = list(sid[order[::-1][:n_ext]]) + list(sid[order[:n_ext]])
        entries.append(
            {
                "property": name,
                "auc": auc.to_dict(),
                "p_value": permutation_p_value(auc.estimate, null),
                "extreme_sample_ids": [str(s) for s in extremes],
                "_score": scores[:, 1] if k == 2 else scores.max(1),
            }
        )
    if entries:
        q = false_discovery_control([e["p_value"] for e in entries], method="bh")
        for e, qv in zip(entries, q):
            e["q_value"] = round(float(qv), 6)
            e["p_value"] = round(e["p_value"], 6)
            est = e["auc"]["estimate"]
            e["flagged"] = bool(qv < config.alpha and est is not None and est >= config.min_auc)
            e["mediated_by"] = None
            e["within_group_auc"] = None
            significant = bool(qv < config.alpha and est is not None and est > 0.5)
            if not significant or k != 2:
                continue
            best = None
            for g in label_groups:
                strat = stratified_auc(e["_score"], y == 1, g["_codes"])
                if not np.isfinite(strat):
                    continue
                if abs(strat - 0.5) <= config.mediation_fraction * abs(est - 0.5):
                    if best is None or abs(strat - 0.5) < abs(best[1] - 0.5):
                        best = (g["columns"], strat)
            if best is not None:
                e["mediated_by"] = best[0]
                e["within_group_auc"] = round(float(best[1]), 4)
                e["flagged"] = False
    together: dict[str, Any] = {}
    if values and len(np.unique(y)) > 1:
        p_all = _all_together(values, y, folds, k)
        auc_all = auc_estimate(y, p_all, patients, n_boot=config.n_boot, seed=config.seed)
        majority = int(np.bincount(y, minlength=k).max())
        together = {
            "auc": auc_all.to_dict(),
            "accuracy": wilson_ci(int((p_all.argmax(1) == y).sum()), len(y)).to_dict(),
            "majority_class_rate": wilson_ci(majority, len(y)).to_dict(),
            "n_properties": len(values),
        }
    return {"properties": entries, "all_properties": together}


def _auc_text(auc: dict[str, Any]) -> str:
    if auc.get("ci_low") is None:
        return f"{auc['estimate']:.2f}" if auc.get("estimate") is not None else "n/a"
    return f"{auc['estimate']:.2f} (95% CI {auc['ci_low']:.2f}-{auc['ci_high']:.2f})"


def check_image_property_shortcut(
    ctx: AuditContext, config: ImagePropertyShortcutConfig
) -> list[Finding]:
    """Each image property alone, and all together, predicting the label.

    Parameters
    ----------
    ctx : AuditContext
        Needs ``image_properties`` (N rows); uses ``folds`` and the manifest's
        metadata (for mediation).
    config : ImagePropertyShortcutConfig

    Returns
    -------
    list of Finding
        One finding for the properties that predict the label on their own
        (warning, critical from ``critical_auc``), one ``info`` finding for
        whole-image grey-level statistics below ``content_min_auc``, one
        ``info`` finding for those mediated by a metadata group, or one pass
        finding.
        ``evidence["properties"]`` lists every property tested (``property``,
        ``auc``, ``p_value``, ``q_value``, ``flagged``, ``mediated_by``,
        ``within_group_auc``, ``extreme_sample_ids``).
    """
    res = property_analysis(ctx, config)
    entries = res["properties"]
    public = [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries]
    together = res["all_properties"]
    all_auc = _auc_text(together["auc"]) if together else "n/a"
    method = {
        "single": f"property cut into {config.n_bins} quantile bins; out-of-fold class shares of "
        "the bin (one-column model), run's folds; AUC interval DeLong or patient-level "
        "bootstrap",
        "p_value": f"label permutation null ({config.n_permutations}), Benjamini-Hochberg across "
        "properties (scipy.stats.false_discovery_control)",
        "all_together": "LogisticRegression (scikit-learn) on standardised properties, "
        "out-of-fold; accuracy compared with the majority-class rate (Wilson)",
        "mediation": f"AUC within each level of a label-predictive metadata group (pairs of the "
        f"same level only); mediated when |AUC_within - 0.5| <= "
        f"{config.mediation_fraction:g} |AUC - 0.5|",
        "rule": f"flag when q < {config.alpha:g}, AUC >= {config.min_auc:.2f} (whole-image grey-level "
        f"statistics: >= {config.content_min_auc:.2f}, info below) and not mediated; "
        f"critical when AUC >= {config.critical_auc:.2f}; mediated (q < {config.alpha:g}) "
        "properties are info",
    }
    evidence = {"properties": public, "all_properties": together, "method": method}
    own = sorted(
        [e for e in entries if e["flagged"] and e["mediated_by"] is None],
        key=lambda e: -e["auc"]["estimate"],
    )
    flagged = [
        e
        for e in own
        if e["property"] not in CONTENT_PROPERTIES or e["auc"]["estimate"] >= config.content_min_auc
    ]
    content = [e for e in own if e not in flagged]
    mediated = sorted(
        [e for e in entries if e["mediated_by"] is not None], key=lambda e: -e["auc"]["estimate"]
    )
    findings: list[Finding] = []
    if flagged:
        top = flagged[0]
        others = ""
        if len(flagged) > 1:
            others = "; also " + ", ".join(
                f"'{e['property']}' (AUC {e['auc']['estimate']:.2f})" for e in flagged[1:6]
            )
        sev = "critical" if top["auc"]["estimate"] >= config.critical_auc else "warning"
        ids = list(dict.fromkeys(s for e in flagged for s in e["extreme_sample_ids"]))
        findings.append(
            Finding(
                check=NAME,
                severity=sev,  # type: ignore[arg-type]
                title=TITLE_FLAGGED.format(prop=top["property"], auc=_auc_text(top["auc"])),
                message=MSG_FLAGGED.format(
                    prop=top["property"],
                    auc=_auc_text(top["auc"]),
                    q=top["q_value"],
                    others=others,
                    all_auc=all_auc,
                )
                + (
                    MSG_CONTENT.format(prop=top["property"])
                    if top["property"] in CONTENT_PROPERTIES
                    else ""
                ),
                evidence=evidence,
                sample_ids=ids,
                recommendation=REC_FLAGGED,
                references=_REFS,
            )
        )
    if content:
        top = content[0]
        findings.append(
            Finding(
                check=NAME,
                severity="info",
                title=TITLE_CONTENT.format(prop=top["property"], auc=_auc_text(top["auc"])),
                message=MSG_CONTENT_ONLY.format(
                    props=", ".join(
                        f"'{e['property']}' (AUC {e['auc']['estimate']:.2f})" for e in content[:6]
                    ),
                    thr=config.content_min_auc,
                )
                + MSG_CONTENT.format(prop=top["property"]),
                evidence=evidence,
                sample_ids=list(dict.fromkeys(s for e in content for s in e["extreme_sample_ids"])),
                recommendation=REC_FLAGGED,
                references=_REFS,
            )
        )
    if mediated:
        top = mediated[0]
        group = "/".join(top["mediated_by"])
        ids = list(dict.fromkeys(s for e in mediated for s in e["extreme_sample_ids"]))
        findings.append(
            Finding(
                check=NAME,
                severity="info",
                title=TITLE_MEDIATED.format(
                    group=group, props=", ".join(e["property"] for e in mediated[:4])
                ),
                message=MSG_MEDIATED.format(
                    props=", ".join(f"'{e['property']}'" for e in mediated[:6]),
                    prop=top["property"],
                    auc=_auc_text(top["auc"]),
                    group=top["mediated_by"][0],
                    strat=top["within_group_auc"],
                ),
                evidence=evidence,
                sample_ids=ids,
                recommendation="Treat as part of the site finding; removing the cue (e.g. cropping a "
                "marker) without balancing the sites does not remove the shortcut.",
                references=_REFS,
            )
        )
    if not findings:
        findings.append(
            Finding(
                check=NAME,
                severity="pass",
                title=TITLE_PASS.format(n=len(entries)),
                message=MSG_PASS.format(n=len(entries), min_auc=config.min_auc, all_auc=all_auc),
                evidence=evidence,
                references=_REFS,
            )
        )
    return findings


def property_table(ctx: AuditContext, config: ImagePropertyShortcutConfig) -> pd.DataFrame:
    """Per-sample table: each property's one-property out-of-fold score.

    Returns
    -------
    pandas.DataFrame
        N rows: ``sample_id`` and ``<property>_oof_score`` per property tested.
    """
    res = property_analysis(ctx, config)
    table: dict[str, Any] = {"sample_id": ctx.sample_ids}
    for e in res["properties"]:
        table[f"{e['property']}_oof_score"] = e["_score"]
    return pd.DataFrame(table)


SPEC = CheckSpec(
    name=NAME,
    func=check_image_property_shortcut,
    config_cls=ImagePropertyShortcutConfig,
    requires=("image_properties",),
    table=property_table,
    description="image statistics (intensity, borders, corner marks, size) that predict the "
    "label, alone and together; 'mediated by site' when they only stand in for a site",
)
