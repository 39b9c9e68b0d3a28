"""Check ``hidden_stratification``: slices of a class on which the model fails.

A model with a good overall AUC can fail on an unlabelled subtype of a class
(Oakden-Rayner et al., ACM CHIL 2020: pneumothorax models failing on cases
without a chest drain). Following their schema-completion idea and Domino
(Eyuboglu et al., ICLR 2022), this check slices each class's rows in the model's
embedding space and looks for slices whose out-of-fold error rate is much higher
than the rest of that class:

* the rows of each class (out-of-fold rows only) are clustered with k-means
  (scikit-learn ``KMeans`` on standardised, PCA-reduced embeddings; ``n_slices``
  clusters) **after removing the direction of the model's own score** (each
  feature's least-squares fit on the logit of the class probability): the
  embedding always encodes how confident the model is, so without this the
  slices would only rediscover "the cases near the decision boundary", which
  every model has. What is left are groups the model's confidence does not
  explain. Out-of-fold embeddings of different fold models are not
  comparable, so the clustering is done within each fold model's rows (all rows
  together with ``embeddings_from_one_model=True``);
* an **error** is a wrong call at the run's one operating threshold
  (:mod:`audit.operating_point`; multi-class: the argmax);
* each slice's error rate (Wilson 95 % interval) is compared with the rest of
  its class by Fisher's exact test (``scipy.stats.fisher_exact``), then
  Benjamini-Hochberg across all slices;
* a slice is flagged when it has at least ``min_slice_size`` images, its error
  rate exceeds the rest's by at least ``min_error_difference`` and ``q < alpha``.

Each flagged slice is described by the metadata levels over-represented in it
(share in the slice vs in its class) and the image properties that differ most
(standardised mean difference), and lists its misclassified images first for a
reviewer to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, fisher_exact
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from audit._probes import group_columns
from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.operating_point import choose_operating_point
from audit.stats import wilson_ci

__all__ = ["SPEC", "HiddenStratificationConfig", "check_hidden_stratification", "slice_analysis"]

NAME = "hidden_stratification"

TITLE_FLAGGED = "A hidden subgroup of '{cls}' images is misclassified {rate:.0%} of the time"
TITLE_PASS = "No slice of a class with a clearly higher error rate ({n} slices)"
MSG_FLAGGED = (
    "Among the '{cls}' images, a group of {size} that look alike to the model is misclassified "
    "{rate} of the time, against {rest} for the other '{cls}' images (q = {q:.3g}). {desc}"
    "Such hidden subgroups are often a subtype, a device or an acquisition that the labels do "
    "not name; the overall accuracy hides them.{more}"
)
MSG_PASS = (
    "Within each class, no group of images that look alike to the model has an error rate "
    "higher than the rest of its class by {diff:.0%} or more ({n} slices of at least {min_size} "
    "images tested)."
)
REC = (
    "Look at the listed images (misclassified ones first) and name what they share; if it is a "
    "clinical subtype or an acquisition, add it as a metadata column, report performance for it, "
    "and collect more such cases."
)
_REFS = ["CLAIM:failure-analysis", "TRIPOD+AI:fairness", "EU-AI-Act-10(2)(f)", "GMLP-8"]


@dataclass(frozen=True)
class HiddenStratificationConfig:
    """Settings of :func:`check_hidden_stratification`.

    Attributes
    ----------
    n_slices : int, default 5
        k-means clusters per class (and fold model). Oakden-Rayner et al. found
        clinically meaningful subtypes among a handful of clusters; more
        clusters make slices smaller than ``min_slice_size``.
    n_components : int, default 16
        PCA dimensions before clustering (k-means in high dimension clusters on
        noise).
    min_slice_size : int, default 20
        Slices smaller than this are not tested (an error rate of 20 images has
        a Wilson interval about +-0.2 wide).
    min_error_difference : float, default 0.15
        Slice error rate minus the rest of its class that is worth a warning.
    critical_error_difference : float, default 0.30
        Difference from which the slice is failed on most of the time: critical.
    alpha : float, default 0.05
        False-discovery rate (Benjamini-Hochberg across slices).
    embeddings_from_one_model : bool, default False
        All embeddings come from one model (cluster all rows together).
    threshold_method : {'youden', 'sensitivity', 'specificity', 'fixed'}, default 'youden'
    threshold_target : float or None, default None
    max_rows_per_fit : int, default 20000
        Rows k-means is fitted on per class and model (the rest are assigned
        to the nearest centre), bounding the cost at large N.
    max_listed : int, default 50
        Sample ids listed per flagged slice.
    seed : int, default 0
    """

    n_slices: int = 5
    n_components: int = 16
    min_slice_size: int = 20
    min_error_difference: float = 0.15
    critical_error_difference: float = 0.30
    alpha: float = 0.05
    embeddings_from_one_model: bool = False
    threshold_method: Literal["youden", "sensitivity", "specificity", "fixed"] = "youden"
    threshold_target: float | None = None
    max_rows_per_fit: int = 20000
    max_listed: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_slices < 2:
            raise ValueError(f"hidden_stratification n_slices must be >= 2; got {self.n_slices}")
        if not 0 < self.min_error_difference <= self.critical_error_difference <= 1:
            raise ValueError(
                "hidden_stratification needs 0 < min_error_difference <= "
                "critical_error_difference <= 1; got "
                f"{self.min_error_difference} and {self.critical_error_difference}"
            )


def _errors(
    ctx: AuditContext,
    y: np.ndarray,
    probs: np.ndarray,
    patients: np.ndarray,
    config: HiddenStratificationConfig,
) -> tuple[np.ndarray, str]:
    if probs.shape[1] == 2:
        op = choose_operating_point(
            y,
            probs,
            method=config.threshold_method,  # type: ignore[arg-type]
            target=config.threshold_target,
            groups=patients,
            seed=config.seed,
        )
        return op.predict(probs).astype(int) != y, (
            f"wrong call at the operating threshold {op.threshold:.4g} ({op.method})"
        )
    return probs.argmax(1) != y, "argmax class differs from the given label"


def _clusters(x: np.ndarray, score: np.ndarray, config: HiddenStratificationConfig) -> np.ndarray:
    """k-means labels of the rows of one class and model, on features without the score direction."""
    n = len(x)
    k = min(config.n_slices, max(1, n // max(config.min_slice_size, 1)))
    if k < 2:
        return np.zeros(n, np.int64)
    x = StandardScaler().fit_transform(x)
    # remove what the model's own score explains (least squares on [1, logit score]):
    # otherwise the slices are just "the cases the model finds hard", which exist always
    design = np.column_stack([np.ones(n), score])
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    x = x - design @ coef
    rng = np.random.default_rng(config.seed)
    fit = (
        np.arange(n)
        if n <= config.max_rows_per_fit
        else rng.choice(n, config.max_rows_per_fit, replace=False)
    )
    n_comp = min(config.n_components, x.shape[1], len(fit) - 1)
    pca = PCA(n_components=n_comp, svd_solver="randomized", random_state=config.seed).fit(x[fit])
    z = pca.transform(x)
    km = KMeans(n_clusters=k, n_init=3, random_state=config.seed).fit(z[fit])
    return km.predict(z).astype(np.int64)


def _describe(
    rows: np.ndarray,
    members: np.ndarray,
    ctx: AuditContext,
    cols: list[Any],
    props: pd.DataFrame | None,
) -> dict[str, Any]:
    """Metadata levels over-represented in the slice and the most different properties."""
    meta = []
    for col in cols:
        in_slice = np.bincount(col.codes[members], minlength=len(col.levels)) / len(members)
        in_class = np.bincount(col.codes[rows], minlength=len(col.levels)) / len(rows)
        j = int(np.argmax(in_slice - in_class))
        if in_slice[j] - in_class[j] >= 0.15:
            meta.append(
                {
                    "column": col.name,
                    "level": col.levels[j],
                    "share_in_slice": round(float(in_slice[j]), 4),
                    "share_in_class": round(float(in_class[j]), 4),
                }
            )
    meta.sort(key=lambda m: -(m["share_in_slice"] - m["share_in_class"]))
    prop = []
    if props is not None:
        rest = np.setdiff1d(rows, members)
        for c in props.columns:
            if c in ("sample_id", "corner_mark_corner"):
                continue
            s = props[c]
            if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                continue
            v = s.astype("float64").to_numpy()
            a, b = v[members], v[rest]
            sd = np.nanstd(v[rows])
            if not np.isfinite(sd) or sd == 0 or len(b) == 0:
                continue
            smd = (np.nanmean(a) - np.nanmean(b)) / sd
            if np.isfinite(smd):
                prop.append(
                    {"property": str(c), "standardized_mean_difference": round(float(smd), 3)}
                )
        prop.sort(key=lambda p: -abs(p["standardized_mean_difference"]))
        prop = [p for p in prop[:3] if abs(p["standardized_mean_difference"]) >= 0.5]
    return {"metadata": meta[:3], "image_properties": prop}


def slice_analysis(ctx: AuditContext, config: HiddenStratificationConfig) -> dict[str, Any]:
    """Slices of every class with their error rates (see the module docstring)."""
    y = ctx.labels
    probs = np.asarray(ctx.get("pred_probs"), dtype=np.float64)
    emb = ctx.get("embeddings")
    patients = ctx.manifest["patient_key"].astype(str).to_numpy()
    folds = (
        np.asarray(ctx.get("folds")).astype(np.int64)
        if ctx.has("folds")
        else np.zeros(ctx.n, np.int64)
    )
    oof = folds >= 0
    if len(np.unique(y[oof])) < 2:
        oof = np.ones(ctx.n, bool)
    err = np.zeros(ctx.n, bool)
    err[oof], err_method = _errors(ctx, y[oof], probs[oof], patients[oof], config)
    model_of = np.zeros(ctx.n, np.int64) if config.embeddings_from_one_model else folds
    slice_of = np.full(ctx.n, -1, np.int64)
    slices: list[dict[str, Any]] = []
    next_id = 0
    for c in range(ctx.n_classes):
        for g in np.unique(model_of[oof]):
            rows = np.flatnonzero(oof & (y == c) & (model_of == g))
            if len(rows) < 2 * config.min_slice_size:
                continue
            p = np.clip(probs[rows, c], 1e-6, 1 - 1e-6)
            lab = _clusters(np.asarray(emb[rows], dtype=np.float64), np.log(p / (1 - p)), config)
            for s in np.unique(lab):
                slice_of[rows[lab == s]] = next_id
                slices.append(
                    {"id": next_id, "class": ctx.class_names[c], "_class": c, "_model": int(g)}
                )
                next_id += 1
    cols = group_columns(ctx.manifest)
    props = ctx.get("image_properties") if ctx.has("image_properties") else None
    tested = []
    for sl in slices:
        members = np.flatnonzero(slice_of == sl["id"])
        cls_rows = np.flatnonzero(oof & (y == sl["_class"]) & (model_of == sl["_model"]))
        rest = np.setdiff1d(cls_rows, members)
        e_in, e_rest = int(err[members].sum()), int(err[rest].sum())
        sl.update(
            size=len(members),
            n_errors=e_in,
            error_rate=wilson_ci(e_in, len(members)).to_dict(),
            rest_error_rate=wilson_ci(e_rest, len(rest)).to_dict(),
            fold_model=None if config.embeddings_from_one_model else sl["_model"],
            p_value=None,
            q_value=None,
            flagged=False,
            _members=members,
        )
        if len(members) >= config.min_slice_size and len(rest) > 0:
            table = [[e_in, len(members) - e_in], [e_rest, len(rest) - e_rest]]
            sl["p_value"] = float(fisher_exact(table, alternative="greater").pvalue)
            tested.append(sl)
    if tested:
        q = false_discovery_control([s["p_value"] for s in tested], method="bh")
        for sl, qv in zip(tested, q):
            sl["q_value"] = round(float(qv), 6)
            sl["p_value"] = round(sl["p_value"], 6)
            diff = sl["error_rate"]["estimate"] - sl["rest_error_rate"]["estimate"]
            sl["error_difference"] = round(float(diff), 4)
            sl["flagged"] = bool(qv < config.alpha and diff >= config.min_error_difference)
            if sl["flagged"]:
                sl["characterized_by"] = _describe(
                    np.flatnonzero(oof & (y == sl["_class"]) & (model_of == sl["_model"])),
                    sl["_members"],
                    ctx,
                    cols,
                    props,
                )
                mem = sl["_members"]
                order = np.concatenate([mem[err[mem]], mem[~err[mem]]])
                sl["sample_ids"] = [str(s) for s in ctx.sample_ids[order[: config.max_listed]]]
    return {"slices": slices, "error_method": err_method, "_slice_of": slice_of, "_err": err}


def _public(sl: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sl.items() if not k.startswith("_")}


def _describe_text(sl: dict[str, Any]) -> str:
    ch = sl.get("characterized_by") or {}
    parts = [
        f"{m['column']} = '{m['level']}' ({m['share_in_slice']:.0%} of the group vs "
        f"{m['share_in_class']:.0%} of the class)"
        for m in ch.get("metadata", [])
    ]
    parts += [
        f"{p['property']} {'higher' if p['standardized_mean_difference'] > 0 else 'lower'} "
        f"(standardised difference {p['standardized_mean_difference']:+.1f})"
        for p in ch.get("image_properties", [])
    ]
    return ("What they share: " + "; ".join(parts) + ". ") if parts else ""


def check_hidden_stratification(
    ctx: AuditContext, config: HiddenStratificationConfig
) -> list[Finding]:
    """Slices of each class in embedding space with a much higher error rate.

    Parameters
    ----------
    ctx : AuditContext
        Needs ``pred_probs`` ``(N, K)`` and ``embeddings`` ``(N, D)``; uses
        ``folds`` (out-of-fold rows, one clustering per fold model), the
        manifest and ``image_properties`` to describe slices.
    config : HiddenStratificationConfig

    Returns
    -------
    list of Finding
        One finding per flagged slice (worst first, warning or critical), or one
        pass finding; ``evidence["slices"]`` lists every slice.
    """
    res = slice_analysis(ctx, config)
    slices = [_public(s) for s in res["slices"]]
    method = {
        "slices": f"KMeans ({config.n_slices} clusters, scikit-learn) on standardised "
        f"PCA({config.n_components}) embeddings, per class and "
        + ("over all rows (one model)" if config.embeddings_from_one_model else "fold model")
        + "; out-of-fold rows only",
        "error": res["error_method"],
        "test": "one-sided Fisher exact test, slice vs rest of its class; Benjamini-Hochberg "
        "across slices; error rates with Wilson intervals",
        "rule": f"flag slices of >= {config.min_slice_size} images whose error rate exceeds the "
        f"rest of the class by >= {config.min_error_difference:.2f} with q < "
        f"{config.alpha:g}; critical from {config.critical_error_difference:.2f}",
        "references": "Oakden-Rayner et al. 2020 (ACM CHIL); Eyuboglu et al. 2022 (ICLR, Domino)",
    }
    flagged = sorted(
        [s for s in res["slices"] if s["flagged"]], key=lambda s: -s["error_difference"]
    )
    tested = [s for s in slices if s["p_value"] is not None]
    evidence = {"slices": slices, "n_slices_tested": len(tested), "method": method}
    if not flagged:
        return [
            Finding(
                check=NAME,
                severity="pass",
                title=TITLE_PASS.format(n=len(tested)),
                message=MSG_PASS.format(
                    diff=config.min_error_difference, n=len(tested), min_size=config.min_slice_size
                ),
                evidence=evidence,
                references=_REFS,
            )
        ]
    findings = []
    for i, sl in enumerate(flagged[:5]):
        diff = sl["error_difference"]
        sev = "critical" if diff >= config.critical_error_difference else "warning"
        er, rr = sl["error_rate"], sl["rest_error_rate"]
        more = (
            f" {len(flagged) - 1} other slice(s) are flagged too."
            if i == 0 and len(flagged) > 1
            else ""
        )
        findings.append(
            Finding(
                check=NAME,
                severity=sev,  # type: ignore[arg-type]
                title=TITLE_FLAGGED.format(cls=sl["class"], rate=er["estimate"]),
                message=MSG_FLAGGED.format(
                    cls=sl["class"],
                    size=sl["size"],
                    rate=f"{er['estimate']:.0%} (95% CI {er['ci_low']:.0%}-{er['ci_high']:.0%})",
                    rest=f"{rr['estimate']:.0%} ({rr['ci_low']:.0%}-{rr['ci_high']:.0%})",
                    q=sl["q_value"],
                    desc=_describe_text(sl),
                    more=more,
                ),
                evidence={**evidence, "slice": _public(sl)}
                if i == 0
                else {"slice": _public(sl), "method": method},
                sample_ids=sl["sample_ids"],
                recommendation=REC,
                references=_REFS,
            )
        )
    return findings


def slice_table(ctx: AuditContext, config: HiddenStratificationConfig) -> pd.DataFrame:
    """Per-sample table: slice id, whether the call was wrong, and whether its slice is flagged.

    Returns
    -------
    pandas.DataFrame
        N rows: ``sample_id``, ``slice`` (-1 for rows not sliced), ``is_error``,
        ``in_flagged_slice``.
    """
    res = slice_analysis(ctx, config)
    flagged = {s["id"] for s in res["slices"] if s["flagged"]}
    slice_of = res["_slice_of"]
    return pd.DataFrame(
        {
            "sample_id": ctx.sample_ids,
            "slice": slice_of,
            "is_error": res["_err"],
            "in_flagged_slice": np.isin(slice_of, list(flagged)),
        }
    )


SPEC = CheckSpec(
    name=NAME,
    func=check_hidden_stratification,
    config_cls=HiddenStratificationConfig,
    requires=("pred_probs", "embeddings"),
    table=slice_table,
    model_based=True,
    description="k-means slices of each class in embedding space with a much higher OOF error "
    "rate (Fisher, BH), described by metadata and image properties",
)
