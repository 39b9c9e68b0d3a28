"""Check ``embedding_encodes_metadata``: can the model's own features tell the sites apart?

A linear probe (scikit-learn ``LogisticRegression`` on standardised features
reduced by PCA) predicts each non-clinical metadata group (site, scanner, view,
acquisition fields; ``sex`` and age are left out by default because a model may
legitimately see them in the anatomy) from ``oof/embeddings.npy``,
cross-validated and grouped by patient. Out-of-fold embeddings of different
folds come from different fold models, whose feature spaces are not comparable,
so the probe is fitted and evaluated within each fold model's rows and the
out-of-fold probe scores are pooled (``embeddings_from_one_model=True`` probes
all rows together, for linear-probe and external runs).

Reported per group: the probe's **AUC** (one-vs-rest macro over levels) with a
patient-level 95 % interval, **balanced accuracy** against its chance level
``1 / levels``, a **permutation p-value** (levels permuted against the fixed
out-of-fold probe scores, 1,000 draws) with Benjamini-Hochberg across groups, and
the chance AUC of a few probes refitted on permuted levels (a check that the
probe itself does not overfit).

**The shortcut finding.** A group that predicts the label on its own (the
``metadata_shortcut`` analysis, same folds and rules) and is also encoded in the
features (probe AUC at least ``encode_auc``, q below ``alpha``) is reported as
**one critical finding** with both numbers: the model can recognise the group,
and recognising it pays off on the label. That is the classic shortcut risk
(Zech et al. 2018; DeGrave, Janizek & Lee, Nat Mach Intell 2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, rankdata
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from audit._probes import (
    auc_estimate,
    coarsens,
    fast_auc,
    multiclass_auc,
    permutation_p_value,
)
from audit.check_spec import CheckSpec
from audit.checks.metadata_shortcut import (
    MetadataShortcutConfig,
    contrast_sentence_parts,
    metadata_analysis,
)
from audit.context import AuditContext
from audit.findings import Finding
from audit.stats import Estimate, wilson_ci

__all__ = [
    "SPEC",
    "EmbeddingEncodesMetadataConfig",
    "check_embedding_encodes_metadata",
    "probe_metadata",
]

NAME = "embedding_encodes_metadata"

TITLE_SHORTCUT = "Shortcut risk: {col} predicts the label and the model's features encode it"
TITLE_SUMMARY = "The model's features encode {n} of {m} metadata group(s)"
TITLE_PASS = "The model's features do not encode the metadata groups tested ({m})"
MSG_SHORTCUT = (
    "Images with {col} = '{hi}' are {ratio} more often '{cls}' ({hi_p:.0%}) than images with "
    "{col} = '{lo}' ({lo_p:.0%}); {col} alone predicts the label with AUC {label_auc}. The "
    "model's features tell {col} '{hi}' apart from the others with AUC {level_auc} (best "
    "recognised: '{best}', AUC {enc_auc}): the model may be recognising the {col}, not the "
    "disease."
)
MSG_SUMMARY = (
    "A linear probe on the model's features recognises {encoded} (AUC at least {thr:.2f}). "
    "These groups do not, on their own, predict the label strongly enough to count as a "
    "shortcut here, but the model's output may shift where the mix of groups differs."
)
MSG_PASS = (
    "A linear probe on the model's features cannot recognise any of {names} with AUC "
    "{thr:.2f} or more."
)
REC_SHORTCUT = (
    "Do not trust the overall AUC: evaluate per group (subgroup_performance) and on an external "
    "site; look at the masking test; balance prevalence across the groups, remove the "
    "site-specific cues (markers, borders, intensity normalisation) and retrain."
)
_REFS = [
    "CLAIM:failure-analysis",
    "TRIPOD+AI:fairness",
    "EU-AI-Act-10(2)(f)",
    "EU-AI-Act-10(2)(g)",
    "GMLP-8",
]


@dataclass(frozen=True)
class EmbeddingEncodesMetadataConfig:
    """Settings of :func:`check_embedding_encodes_metadata`.

    Attributes
    ----------
    exclude_columns : tuple of str, default ('sex', 'age')
        Clinical columns not probed (a model may see sex and age in the
        anatomy; encoding them is not by itself a shortcut).
    encode_auc : float, default 0.75
        Probe AUC from which a group counts as encoded: a clearly better than
        chance recognition ("acceptable" discrimination starts at 0.7 in
        Hosmer & Lemeshow; 0.75 keeps a margin for probe optimism).
    alpha : float, default 0.05
        False-discovery rate (Benjamini-Hochberg across groups).
    label_min_auc : float, default 0.60
        The label side of the shortcut: ``metadata_shortcut``'s ``min_auc``.
    n_components : int, default 32
        PCA dimensions before the probe (fitted per fold model on its rows,
        without the levels): keeps the probe linear, fast and far from
        over-fitting 512-d features with few rows.
    inner_splits : int, default 5
        Cross-validation folds of the probe within each fold model.
    max_rows_per_model : int, default 5000
        Rows sampled per fold model (stratified by level) to bound the cost at
        large N.
    min_rows_per_model : int, default 40
        Fold models with fewer rows are not probed.
    embeddings_from_one_model : bool, default False
        All embeddings come from one model (linear-probe or external runs).
    n_permutations : int, default 1000
        Level permutations of the null (scores fixed).
    n_refit_permutations : int, default 1
        Probes refitted on permuted levels, to report the chance AUC.
    n_boot : int, default 500
        Bootstrap replicates of the AUC interval when patients repeat.
    seed : int, default 0
    """

    exclude_columns: tuple[str, ...] = ("sex", "age")
    encode_auc: float = 0.75
    alpha: float = 0.05
    label_min_auc: float = 0.60
    n_components: int = 32
    inner_splits: int = 5
    max_rows_per_model: int = 5000
    min_rows_per_model: int = 40
    embeddings_from_one_model: bool = False
    n_permutations: int = 1000
    n_refit_permutations: int = 1
    n_boot: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.5 < self.encode_auc <= 1:
            raise ValueError(
                f"embedding_encodes_metadata encode_auc must be in (0.5, 1]; got {self.encode_auc}"
            )
        if self.inner_splits < 2:
            raise ValueError(
                f"embedding_encodes_metadata inner_splits must be >= 2; got {self.inner_splits}"
            )


def _model_groups(ctx: AuditContext, config: EmbeddingEncodesMetadataConfig) -> np.ndarray:
    if config.embeddings_from_one_model or not ctx.has("folds"):
        return np.zeros(ctx.n, np.int64)
    return np.asarray(ctx.get("folds")).astype(np.int64)


def _probe_rows(
    codes: np.ndarray, rows: np.ndarray, cap: int, rng: np.random.Generator
) -> np.ndarray:
    if len(rows) <= cap:
        return rows
    # stratified by level: keep each level's share
    keep = []
    for c in np.unique(codes[rows]):
        members = rows[codes[rows] == c]
        take = max(1, round(cap * len(members) / len(rows)))
        keep.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(keep))


def reduced_features(
    emb: np.ndarray, model_of: np.ndarray, config: EmbeddingEncodesMetadataConfig
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Standardised, PCA-reduced features of each model's rows (label-free, computed once).

    Returns
    -------
    dict
        Model -> (rows ``(M,)``, features ``(M, n_components)``); the scaler and
        PCA are fitted on at most ``max_rows_per_model`` random rows of the model.
    """
    rng = np.random.default_rng(config.seed)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for g in np.unique(model_of):
        rows = np.flatnonzero(model_of == g)
        if len(rows) < config.min_rows_per_model:
            continue
        fit_rows = (
            rows
            if len(rows) <= config.max_rows_per_model
            else np.sort(rng.choice(rows, config.max_rows_per_model, replace=False))
        )
        x_fit = np.asarray(emb[fit_rows], dtype=np.float64)
        scaler = StandardScaler().fit(x_fit)
        n_comp = min(config.n_components, x_fit.shape[1], len(fit_rows) - 1)
        pca = PCA(n_components=n_comp, svd_solver="randomized", random_state=config.seed)
        pca.fit(scaler.transform(x_fit))
        x = np.empty((len(rows), n_comp))
        for a in range(0, len(rows), 50_000):
            x[a : a + 50_000] = pca.transform(
                scaler.transform(np.asarray(emb[rows[a : a + 50_000]], dtype=np.float64))
            )
        out[int(g)] = (rows, x)
    return out


def probe_metadata(
    feats: dict[int, tuple[np.ndarray, np.ndarray]],
    codes: np.ndarray,
    n_levels: int,
    patients: np.ndarray,
    config: EmbeddingEncodesMetadataConfig,
    *,
    permute: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probe probabilities of each level.

    Parameters
    ----------
    feats : dict
        :func:`reduced_features` (each model's rows probed separately).
    codes : numpy.ndarray
        ``(N,)`` level index of every row.
    n_levels : int
    patients : numpy.ndarray
        ``(N,)`` patient keys (inner folds grouped by patient).
    config : EmbeddingEncodesMetadataConfig
    permute : numpy.random.Generator, optional
        Permute the levels within each model's rows first (refit null).

    Returns
    -------
    probs : numpy.ndarray
        ``(M, n_levels)`` out-of-fold probabilities of the probed rows.
    rows : numpy.ndarray
        ``(M,)`` their row indices.
    """
    rng = np.random.default_rng(config.seed)
    out_p, out_r = [], []
    for rows_all, x_all in feats.values():
        pick = _probe_rows(
            codes[rows_all], np.arange(len(rows_all)), config.max_rows_per_model, rng
        )
        rows, x = rows_all[pick], x_all[pick]
        y = codes[rows].copy()
        if permute is not None:
            y = permute.permutation(y)
        counts = np.bincount(y)
        if len(np.unique(y)) < 2:
            continue
        n_inner = int(min(config.inner_splits, counts[counts > 0].min()))
        if n_inner < 2:
            continue
        probs = np.zeros((len(rows), n_levels))
        _, pat = np.unique(patients[rows], return_inverse=True)
        inner = np.random.default_rng(config.seed).integers(0, n_inner, pat.max() + 1)[pat.ravel()]
        for f in range(n_inner):
            tr, te = np.flatnonzero(inner != f), np.flatnonzero(inner == f)
            if len(te) == 0:
                continue
            if len(np.unique(y[tr])) < 2:
                probs[te] = np.bincount(y[tr], minlength=n_levels) / len(tr)
                continue
            clf = LogisticRegression(max_iter=300, C=1.0).fit(x[tr], y[tr])
            probs[np.ix_(te, clf.classes_)] = clf.predict_proba(x[te])
        out_p.append(probs)
        out_r.append(rows)
    if not out_r:
        return np.zeros((0, n_levels)), np.zeros(0, np.int64)
    return np.concatenate(out_p), np.concatenate(out_r)


def _auc_from_ranks(ranks: np.ndarray, pos: np.ndarray) -> float:
    n_p = int(pos.sum())
    n_n = pos.size - n_p
    if n_p == 0 or n_n == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_p * (n_p + 1) / 2) / (n_p * n_n))


def _max_level_auc(
    probs: np.ndarray, codes: np.ndarray, ranks: list[np.ndarray] | None = None
) -> tuple[int, float]:
    """The level best told apart from the others (one-vs-rest AUC) and that AUC."""
    if ranks is None:
        ranks = [rankdata(probs[:, c]) for c in range(probs.shape[1])]
    aucs = np.array([_auc_from_ranks(ranks[c], codes == c) for c in range(probs.shape[1])])
    if probs.shape[1] == 2:
        aucs = aucs[1:]  # two levels: one AUC, stated for the second level
        return 1, float(aucs[0])
    if not np.isfinite(aucs).any():
        return 0, float("nan")
    best = int(np.nanargmax(aucs))
    return best, float(aucs[best])


def _encoding_statistic(
    probs: np.ndarray,
    codes: np.ndarray,
    patients: np.ndarray,
    config: EmbeddingEncodesMetadataConfig,
    rng: np.random.Generator,
) -> tuple[int, Estimate, np.ndarray]:
    """Max over levels of the one-vs-rest probe AUC, its interval and permutation null."""
    ranks = [rankdata(probs[:, c]) for c in range(probs.shape[1])]
    best, value = _max_level_auc(probs, codes, ranks)
    pos = (codes == best).astype(np.int64)
    two = np.stack([1 - probs[:, best], probs[:, best]], axis=1)
    est = auc_estimate(pos, two, patients, n_boot=config.n_boot, seed=config.seed)
    est = Estimate(
        value,
        est.low,
        est.high,
        est.level,
        f"one-vs-rest AUC of the best-recognised level; {est.method}",
    )
    null = np.array(
        [
            _max_level_auc(probs, perm, ranks)[1]
            for perm in (rng.permutation(codes) for _ in range(config.n_permutations))
        ]
    )
    return best, est, null


def _level_aucs(probs: np.ndarray, codes: np.ndarray, levels: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "level": lv,
            "n": int((codes == c).sum()),
            "auc": (round(a, 4) if np.isfinite(a := fast_auc(probs[:, c], codes == c)) else None),
        }
        for c, lv in enumerate(levels)
    ]


def _auc_txt(e: dict[str, Any]) -> str:
    if e["ci_low"] is None:
        return f"{e['estimate']:.2f}"
    return f"{e['estimate']:.2f} (95% CI {e['ci_low']:.2f}-{e['ci_high']:.2f})"


def encoding_analysis(
    ctx: AuditContext, config: EmbeddingEncodesMetadataConfig
) -> list[dict[str, Any]]:
    """Per probed group: label-side and encoding-side numbers (see the module docstring)."""
    label_cfg = MetadataShortcutConfig(
        min_auc=config.label_min_auc,
        alpha=config.alpha,
        seed=config.seed,
        n_boot=config.n_boot,
        critical_auc=max(0.8, config.label_min_auc),
    )
    entries = metadata_analysis(ctx, label_cfg)
    patients = ctx.manifest["patient_key"].astype(str).to_numpy()
    feats: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
    rng = np.random.default_rng(config.seed + 1)
    out = []
    for e in entries:
        if all(
            c in config.exclude_columns or (c == "age_band" and "age" in config.exclude_columns)
            for c in e["columns"]
        ):
            continue
        codes = e["_codes"]
        levels = [lv["level"] for lv in e["levels"]]
        k = len(levels)
        if feats is None:
            feats = reduced_features(ctx.get("embeddings"), _model_groups(ctx, config), config)
        probs, rows = probe_metadata(feats, codes, k, patients, config)
        if len(rows) == 0:
            continue
        c = codes[rows]
        best, auc, null = _encoding_statistic(probs, c, patients[rows], config, rng)
        refit = []
        for _ in range(config.n_refit_permutations):
            pp, rr = probe_metadata(feats, codes, k, patients, config, permute=rng)
            refit.append(_max_level_auc(pp, codes[rr])[1] if len(rr) else np.nan)
        pred = probs.argmax(1)
        bacc = float(balanced_accuracy_score(c, pred))
        out.append(
            {
                "columns": e["columns"],
                "auc": auc.to_dict(),
                "most_recognisable_level": levels[best],
                "macro_auc": (
                    round(m, 4) if np.isfinite(m := multiclass_auc(probs, c, k)) else None
                ),
                "balanced_accuracy": round(bacc, 4),
                "chance_balanced_accuracy": round(1 / len(np.unique(c)), 4),
                "accuracy": wilson_ci(int((pred == c).sum()), len(c)).to_dict(),
                "p_value": permutation_p_value(auc.estimate, null),
                "chance_auc_refit": [round(float(r), 4) if np.isfinite(r) else None for r in refit],
                "levels": _level_aucs(probs, c, levels),
                "n_probed": len(rows),
                "label": {
                    "auc": e["auc"],
                    "q_value": e["q_value"],
                    "flagged": e["flagged"],
                    "levels": e["levels"],
                },
                "_entry": e,
                "_rows": rows,
                "_probs": probs,
            }
        )
    if out:
        q = false_discovery_control([o["p_value"] for o in out], method="bh")
        for o, qv in zip(out, q):
            o["q_value"] = round(float(qv), 6)
            o["p_value"] = round(o["p_value"], 6)
            est = o["auc"]["estimate"]
            o["encoded"] = bool(qv < config.alpha and est is not None and est >= config.encode_auc)
            o["shortcut"] = bool(o["encoded"] and o["label"]["flagged"])
    return out


def _public(o: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in o.items() if not k.startswith("_")}


def _nested_sentence(col: str, nested: list[dict[str, Any]]) -> str:
    """The coarser groupings folded into a shortcut finding, in one sentence (or '')."""
    if not nested:
        return ""
    parts = "; ".join(
        f"{'/'.join(g['columns'])} (alone AUC {_auc_txt(g['label']['auc'])}, encoded AUC "
        f"{_auc_txt(g['auc'])})"
        for g in nested
    )
    return (
        f" Coarser groupings that only merge levels of {col} tell the same story and are not "
        f"reported separately: {parts}."
    )


def check_embedding_encodes_metadata(
    ctx: AuditContext, config: EmbeddingEncodesMetadataConfig
) -> list[Finding]:
    """Linear probes from the model's embeddings to each metadata group.

    Parameters
    ----------
    ctx : AuditContext
        Needs ``embeddings`` ``(N, D)``; uses ``folds`` ``(N,)`` to probe within
        each fold model.
    config : EmbeddingEncodesMetadataConfig

    Returns
    -------
    list of Finding
        One critical *shortcut* finding per group that both predicts the label
        and is encoded (a group that only merges levels of a finer such group,
        :func:`audit._probes.coarsens`, is folded into the finer group's finding:
        ``evidence["nested_groups"]``), then one summary finding (``evidence["groups"]``; info
        when some group is encoded, else pass).
    """
    groups = encoding_analysis(ctx, config)
    method = {
        "probe": f"StandardScaler + PCA({config.n_components}) + LogisticRegression "
        f"(scikit-learn), {config.inner_splits} inner folds of random whole patients "
        + (
            "over all rows (one model)"
            if config.embeddings_from_one_model or not ctx.has("folds")
            else "within each fold model's rows, pooled"
        ),
        "auc": "one-vs-rest AUC of the best-recognised level (out-of-fold probe "
        "probabilities; the macro AUC over levels is given too); interval DeLong or "
        "patient-level bootstrap",
        "p_value": f"levels permuted against the fixed OOF probe scores ({config.n_permutations} "
        "permutations), Benjamini-Hochberg across groups",
        "label_side": "metadata_shortcut analysis (one-column OOF AUC, permutation p, BH)",
        "rule": f"encoded: AUC >= {config.encode_auc:.2f} and q < {config.alpha:g}; shortcut: "
        f"encoded and the group predicts the label (AUC >= {config.label_min_auc:.2f}, "
        f"q < {config.alpha:g})",
    }
    findings: list[Finding] = []
    sid = ctx.sample_ids
    positive = 1 if ctx.n_classes > 1 else 0
    cls = ctx.class_names[positive]
    # a shortcut group that only merges levels of a finer shortcut group (in the demo
    # dicom_modality: CR at site B, DX elsewhere) is the same finding: it is folded into
    # the finer group's finding instead of being reported a second time
    primaries: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for o in sorted((o for o in groups if o["shortcut"]), key=lambda o: -len(o["levels"])):
        home = next(
            (
                nested
                for p, nested in primaries
                if coarsens(p["_entry"]["_codes"], o["_entry"]["_codes"])
            ),
            None,
        )
        if home is None:
            primaries.append((o, []))
        else:
            home.append(o)
    for o, nested in primaries:
        col = o["columns"][0]
        parts = contrast_sentence_parts(o["_entry"])
        lvl = next(lv for lv in o["levels"] if lv["level"] == parts["hi"])
        level_auc = f"{lvl['auc']:.2f}" if lvl["auc"] is not None else "n/a"
        codes = o["_entry"]["_codes"]
        hi_code = [lv["level"] for lv in o["_entry"]["levels"]].index(parts["hi"])
        findings.append(
            Finding(
                check=NAME,
                severity="critical",
                title=TITLE_SHORTCUT.format(col="/".join(o["columns"])),
                message=MSG_SHORTCUT.format(
                    col=col,
                    cls=cls,
                    label_auc=_auc_txt(o["label"]["auc"]),
                    level_auc=level_auc,
                    enc_auc=_auc_txt(o["auc"]),
                    best=o["most_recognisable_level"],
                    **parts,
                )
                + _nested_sentence(col, nested),
                evidence={
                    "shortcut": True,
                    "columns": o["columns"],
                    "nested_groups": [
                        {
                            "columns": g["columns"],
                            "label_auc": g["label"]["auc"],
                            "encoding_auc": g["auc"],
                        }
                        for g in nested
                    ],
                    "label_auc": o["label"]["auc"],
                    "label_q_value": o["label"]["q_value"],
                    "levels": o["label"]["levels"],
                    "encoding_auc": o["auc"],
                    "encoding_q_value": o["q_value"],
                    "encoding_by_level": o["levels"],
                    "balanced_accuracy": o["balanced_accuracy"],
                    "chance_balanced_accuracy": o["chance_balanced_accuracy"],
                    "chance_auc_refit": o["chance_auc_refit"],
                    "n_probed": o["n_probed"],
                    "method": method,
                },
                sample_ids=list(sid[codes == hi_code][:200]),
                recommendation=REC_SHORTCUT,
                references=_REFS,
            )
        )
    encoded = [o for o in groups if o["encoded"] and not o["shortcut"]]
    names = ", ".join("/".join(o["columns"]) for o in groups) or "none"
    public = [_public(o) for o in groups]
    evidence = {"groups": public, "method": method}
    if encoded:
        enc = "; ".join(f"{'/'.join(o['columns'])} (AUC {_auc_txt(o['auc'])})" for o in encoded)
        findings.append(
            Finding(
                check=NAME,
                severity="info",
                title=TITLE_SUMMARY.format(
                    n=len(encoded) + sum(o["shortcut"] for o in groups), m=len(groups)
                ),
                message=MSG_SUMMARY.format(encoded=enc, thr=config.encode_auc),
                evidence=evidence,
                references=_REFS,
                recommendation="Check performance per group (subgroup_performance) and on data from "
                "other sites before deployment.",
            )
        )
    elif not findings:
        findings.append(
            Finding(
                check=NAME,
                severity="pass",
                title=TITLE_PASS.format(m=len(groups)),
                message=MSG_PASS.format(names=names, thr=config.encode_auc),
                evidence=evidence,
                references=_REFS,
            )
        )
    else:
        findings.append(
            Finding(
                check=NAME,
                severity="info",
                title=TITLE_SUMMARY.format(n=sum(o["shortcut"] for o in groups), m=len(groups)),
                message="Probe results for every metadata group tested: "
                + "; ".join(f"{'/'.join(o['columns'])} AUC {_auc_txt(o['auc'])}" for o in groups)
                + ".",
                evidence=evidence,
                references=_REFS,
            )
        )
    return findings


def encoding_table(ctx: AuditContext, config: EmbeddingEncodesMetadataConfig) -> pd.DataFrame:
    """Per-sample table: for each probed group, the out-of-fold probe probability of the row's level.

    Returns
    -------
    pandas.DataFrame
        N rows: ``sample_id`` and ``<column>_probe_prob`` (NaN for rows not
        probed, e.g. beyond ``max_rows_per_model``).
    """
    table: dict[str, Any] = {"sample_id": ctx.sample_ids}
    for o in encoding_analysis(ctx, config):
        col = np.full(ctx.n, np.nan)
        codes = o["_entry"]["_codes"]
        rows = o["_rows"]
        col[rows] = o["_probs"][np.arange(len(rows)), codes[rows]]
        table[f"{o['columns'][0]}_probe_prob"] = col
    return pd.DataFrame(table)


SPEC = CheckSpec(
    name=NAME,
    func=check_embedding_encodes_metadata,
    config_cls=EmbeddingEncodesMetadataConfig,
    requires=("embeddings",),
    table=encoding_table,
    model_based=True,
    description="linear probe from the model's embeddings to site/scanner/acquisition groups; "
    "label-predictive and encoded = one shortcut finding",
)
