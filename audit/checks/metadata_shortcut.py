"""Check ``metadata_shortcut``: does a metadata column alone predict the label?

Zech et al. (PLoS Med 2018) found that the hospital an X-ray came from predicted
pneumonia with AUC 0.861 from the site's prevalence alone. A model trained on
such data can score well by recognising the site. This check measures, for every
column that describes groups of images (``site``, ``scanner``, ``view``, ``sex``,
age bands, varying ``dicom_*`` acquisition fields and user columns; never
identifiers or constant columns), how well the column **alone** predicts the
label:

* the **one-column model**: out-of-fold, on the run's folds (grouped by
  patient), each row is scored with its level's class shares in the other folds
  (the fit of an unpenalised logistic regression on the column's one-hot levels;
  :func:`audit._probes.level_rate_scores`); its **AUC** with a patient-level
  95 % interval (DeLong, or a patient-cluster bootstrap when patients repeat);
* a **permutation p-value**: the labels are permuted ``n_permutations`` times
  and the out-of-fold AUC recomputed (Phipson & Smyth 2010 estimate), then
  **Benjamini-Hochberg** across the columns tested
  (``scipy.stats.false_discovery_control``);
* the **per-level prevalence** table with Wilson 95 % intervals.

Columns that are the same partition of the rows (in the demo ``site``,
``scanner`` and ``dicom_manufacturer``) are one test, reported once with all
their names. A column is flagged when its q-value is below ``alpha`` and its AUC
is at least ``min_auc`` (an effect-size floor: with many images a trivial
difference is significant). Whether the model's own features also encode a
flagged column, which turns a confounder into a shortcut, is the
``embedding_encodes_metadata`` check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from audit._probes import (
    GroupColumn,
    auc_estimate,
    binary_level_null,
    group_columns,
    level_rate_scores,
    multiclass_auc,
    permutation_p_value,
    probe_folds,
    same_partitions,
)
from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.stats import wilson_ci

__all__ = ["SPEC", "MetadataShortcutConfig", "check_metadata_shortcut", "metadata_analysis"]

NAME = "metadata_shortcut"

TITLE_FLAGGED = "{cols} alone predicts the label (AUC {auc})"
TITLE_PASS = "No metadata column predicts the label ({n} tested)"
MSG_FLAGGED = (
    "Images with {col} = '{hi}' are {ratio} more often '{cls}' ({hi_p:.0%}, 95% CI {hi_lo:.0%}-"
    "{hi_hi:.0%}, n={hi_n}) than images with {col} = '{lo}' ({lo_p:.0%}, {lo_lo:.0%}-{lo_hi:.0%}, "
    "n={lo_n}). Knowing only {col_plain} predicts the label with AUC {auc} (q = {q:.3g}). A model "
    "trained on these data can score well by recognising {col_plain} instead of the disease, and "
    "its accuracy will not carry over to a place with another case mix."
)
MSG_PASS = (
    "None of the {n} metadata columns tested ({names}) predicts the label better than chance "
    "after correction for multiple testing (Benjamini-Hochberg at {alpha:g}) by at least AUC "
    "{min_auc:.2f}."
)
REC_FLAGGED = (
    "Check whether the model relies on it (the embedding_encodes_metadata and masking_test "
    "checks); balance the prevalence across the groups (sampling or weighting), or evaluate on a "
    "site not used for training, and report performance per group."
)
_REFS = ["CLAIM:data-sources", "TRIPOD+AI:fairness", "EU-AI-Act-10(2)(f)", "GMLP-3"]


@dataclass(frozen=True)
class MetadataShortcutConfig:
    """Settings of :func:`check_metadata_shortcut`.

    Attributes
    ----------
    columns : tuple of str, default ()
        Columns to test; empty: every column that describes groups (see the
        module docstring).
    exclude_columns : tuple of str, default ()
        Columns never tested.
    age_bands : tuple of float, default (0, 18, 40, 65, 130)
        Age bands (those of ``class_balance_and_size``).
    numeric_bins : int, default 5
        Quantile bins of a numeric column with more than ``max_levels`` values.
    max_levels : int, default 20
        Columns with more levels are skipped (they identify rather than group).
    n_permutations : int, default 1000
        Label permutations of the null; the smallest possible p-value is
        ``1 / (n_permutations + 1)``, so 1,000 lets a column pass BH at 0.05
        among up to 50 columns.
    alpha : float, default 0.05
        False-discovery rate (Benjamini-Hochberg across columns).
    min_auc : float, default 0.60
        Smallest AUC worth a warning. Hosmer & Lemeshow's "poor" band ends at
        0.7; 0.6 flags a confounder strong enough to lift a model's AUC by
        several points (site prevalence alone gave 0.861 in Zech et al. 2018).
    critical_auc : float, default 0.80
        AUC from which the column alone approaches a useful classifier (Hosmer
        & Lemeshow's "excellent" band starts at 0.8): critical.
    positive_class : int, default 1
        Class whose prevalence the level table shows.
    n_splits : int, default 5
        Folds when the run has none (patient-grouped, stratified).
    n_boot : int, default 1000
        Bootstrap replicates of the AUC interval.
    seed : int, default 0
        Seed of permutations and bootstrap.
    """

    columns: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    age_bands: tuple[float, ...] = (0, 18, 40, 65, 130)
    numeric_bins: int = 5
    max_levels: int = 20
    n_permutations: int = 1000
    alpha: float = 0.05
    min_auc: float = 0.60
    critical_auc: float = 0.80
    positive_class: int = 1
    n_splits: int = 5
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.5 <= self.min_auc <= self.critical_auc <= 1:
            raise ValueError(
                f"metadata_shortcut needs 0.5 <= min_auc <= critical_auc <= 1; got "
                f"{self.min_auc} and {self.critical_auc}"
            )
        if not 0 < self.alpha < 1:
            raise ValueError(f"metadata_shortcut alpha must be in (0, 1); got {self.alpha}")
        if self.n_permutations < 1:
            raise ValueError(
                f"metadata_shortcut n_permutations must be >= 1; got {self.n_permutations}"
            )


def _levels_table(col: GroupColumn, y: np.ndarray, positive: int) -> list[dict[str, Any]]:
    rows = []
    for code, level in enumerate(col.levels):
        members = col.codes == code
        n = int(members.sum())
        rows.append(
            {
                "level": level,
                "n": n,
                "prevalence": wilson_ci(int((y[members] == positive).sum()), n).to_dict(),
            }
        )
    return rows


def metadata_analysis(ctx: AuditContext, config: MetadataShortcutConfig) -> list[dict[str, Any]]:
    """One entry per same-partition group of columns, in test order.

    Returns
    -------
    list of dict
        ``columns`` (names), ``auc`` (Estimate dict), ``p_value``, ``q_value``,
        ``levels`` ([{level, n, prevalence}]), ``flagged`` (bool), and the
        private ``_codes`` ``(N,)`` level index (for the other shortcut checks).
    """
    m = ctx.manifest
    y = ctx.labels
    k = ctx.n_classes
    patients = m["patient_key"].astype(str).to_numpy()
    cols = group_columns(
        m,
        columns=config.columns or None,
        exclude=config.exclude_columns,
        age_bands=config.age_bands,
        numeric_bins=config.numeric_bins,
        max_levels=config.max_levels,
    )
    if not cols or len(np.unique(y)) < 2:
        return []
    folds = probe_folds(
        y,
        patients,
        ctx.get("folds") if ctx.has("folds") else None,
        n_splits=config.n_splits,
        seed=config.seed,
    )
    rng = np.random.default_rng(config.seed)
    out: list[dict[str, Any]] = []
    for group in same_partitions(cols):
        col = group[0]
        n_lvl = len(col.levels)
        scores = level_rate_scores(col.codes, y, folds, n_lvl, k)
        auc = auc_estimate(y, scores, patients, n_boot=config.n_boot, seed=config.seed)
        if k == 2:
            null = binary_level_null(col.codes, y, folds, n_lvl, config.n_permutations, rng)
        else:
            null = np.array(
                [
                    multiclass_auc(
                        level_rate_scores(col.codes, rng.permutation(y), folds, n_lvl, k), y, k
                    )
                    for _ in range(config.n_permutations)
                ]
            )
        out.append(
            {
                "columns": [c.name for c in group],
                "auc": auc.to_dict(),
                "p_value": permutation_p_value(auc.estimate, null),
                "levels": _levels_table(col, y, config.positive_class),
                "_codes": col.codes,
                "_level_names": _level_names(group),
            }
        )
    q = false_discovery_control([e["p_value"] for e in out], method="bh")
    for e, qv in zip(out, q):
        e["q_value"] = round(float(qv), 6)
        e["p_value"] = round(e["p_value"], 6)
        est = e["auc"]["estimate"]
        e["flagged"] = bool(qv < config.alpha and est is not None and est >= config.min_auc)
    return out


def _level_names(group: list[GroupColumn]) -> dict[str, list[str]]:
    """Each column's level name for each level code of the group's first column."""
    first = group[0]
    rows = [int(np.flatnonzero(first.codes == c)[0]) for c in range(len(first.levels))]
    return {col.name: [col.levels[col.codes[r]] for r in rows] for col in group}


def _only_level_of(members: np.ndarray, others: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Columns of other groups one of whose levels holds exactly the rows ``members``."""
    out = []
    for e in others:
        codes = e["_codes"]
        inside = np.unique(codes[members])
        if len(inside) == 1 and np.array_equal(codes == inside[0], members):
            out += [(c, e["_level_names"][c][int(inside[0])]) for c in e["columns"]]
    return out


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def contrast_sentence_parts(entry: dict[str, Any]) -> dict[str, Any]:
    """Highest- and lowest-prevalence levels (n >= 1) of an analysis entry, for messages."""
    levels = [lv for lv in entry["levels"] if lv["prevalence"]["estimate"] is not None]
    hi = max(levels, key=lambda lv: lv["prevalence"]["estimate"])
    lo = min(levels, key=lambda lv: lv["prevalence"]["estimate"])
    hp, lp = hi["prevalence"], lo["prevalence"]
    ratio = f"{hp['estimate'] / lp['estimate']:.1f}x" if lp["estimate"] else "much"
    return {
        "hi": hi["level"],
        "lo": lo["level"],
        "ratio": ratio,
        "hi_p": hp["estimate"],
        "hi_lo": hp["ci_low"] or 0.0,
        "hi_hi": hp["ci_high"] or 0.0,
        "hi_n": hi["n"],
        "lo_p": lp["estimate"],
        "lo_lo": lp["ci_low"] or 0.0,
        "lo_hi": lp["ci_high"] or 0.0,
        "lo_n": lo["n"],
    }


def _auc_text(auc: dict[str, Any]) -> str:
    if auc["ci_low"] is None:
        return f"{auc['estimate']:.2f}"
    return f"{auc['estimate']:.2f}, 95% CI {auc['ci_low']:.2f}-{auc['ci_high']:.2f}"


def check_metadata_shortcut(ctx: AuditContext, config: MetadataShortcutConfig) -> list[Finding]:
    """How well each metadata column alone predicts the label (see the module docstring).

    Parameters
    ----------
    ctx : AuditContext
        Manifest (labels, patients, metadata columns); ``folds`` when present.
    config : MetadataShortcutConfig

    Returns
    -------
    list of Finding
        One finding: ``evidence["columns"]`` lists every tested group of
        columns (``columns``, ``auc``, ``p_value``, ``q_value``, ``levels``,
        ``flagged``); severity from the strongest flagged group (warning from
        ``min_auc``, critical from ``critical_auc``), else pass.
    """
    entries = metadata_analysis(ctx, config)
    method = {
        "model": "one-column model: out-of-fold class shares of the row's level "
        "(unpenalised one-hot logistic regression, closed form), run's folds",
        "auc_interval": "DeLong, or patient-level percentile bootstrap when patients repeat",
        "p_value": f"label permutation null, {config.n_permutations} permutations "
        "(Phipson & Smyth 2010)",
        "multiple_testing": "Benjamini-Hochberg across column groups "
        "(scipy.stats.false_discovery_control)",
        "prevalence_interval": "Wilson score interval",
        "rule": f"flag when q < {config.alpha:g} and AUC >= {config.min_auc:.2f}; critical when "
        f"AUC >= {config.critical_auc:.2f}",
    }
    public = [_public(e) for e in entries]
    n_tested = len(entries)
    if not entries:
        return [
            Finding(
                check=NAME,
                severity="pass",
                title=TITLE_PASS.format(n=0),
                message="No manifest column describes groups of images (site, scanner, "
                "sex, age, view, acquisition fields), so none could be tested.",
                evidence={"columns": [], "n_images": ctx.n, "method": method},
                references=_REFS,
            )
        ]
    flagged = sorted(
        [e for e in entries if e["flagged"]], key=lambda e: -(e["auc"]["estimate"] or 0)
    )
    if not flagged:
        names = ", ".join("/".join(e["columns"]) for e in entries)
        return [
            Finding(
                check=NAME,
                severity="pass",
                title=TITLE_PASS.format(n=n_tested),
                message=MSG_PASS.format(
                    n=n_tested, names=names, alpha=config.alpha, min_auc=config.min_auc
                ),
                evidence={"columns": public, "n_images": ctx.n, "method": method},
                references=_REFS,
            )
        ]
    top = flagged[0]
    auc = top["auc"]
    severity = "critical" if auc["estimate"] >= config.critical_auc else "warning"
    col_names = top["columns"]
    col = col_names[0]
    plain = col if len(col_names) == 1 else f"{col} (same groups as {', '.join(col_names[1:])})"
    cls = ctx.class_names[config.positive_class] if config.positive_class < ctx.n_classes else "?"
    message = MSG_FLAGGED.format(
        col=col,
        col_plain=plain,
        cls=cls,
        auc=_auc_text(auc),
        q=top["q_value"],
        **contrast_sentence_parts(top),
    )
    if len(flagged) > 1:
        others = "; ".join(
            f"{'/'.join(e['columns'])} (AUC {e['auc']['estimate']:.2f})" for e in flagged[1:]
        )
        message += f" Other columns that predict the label: {others}."
    parts = contrast_sentence_parts(top)
    names = [lv["level"] for lv in top["levels"]]
    codes = top["_codes"]
    members = codes == names.index(parts["hi"])
    for level in (parts["hi"], parts["lo"]):
        alone = _only_level_of(codes == names.index(level), [e for e in entries if e is not top])
        if alone:
            message += (
                f" Only the images with {col} = '{level}' have "
                + ", ".join(f"{c} = '{lv}'" for c, lv in alone)
                + ", so these acquisition settings tell the same story."
            )
            break
    ids = ctx.sample_ids[members][:200]
    return [
        Finding(
            check=NAME,
            severity=severity,  # type: ignore[arg-type]
            title=TITLE_FLAGGED.format(cols="/".join(col_names), auc=_auc_text(auc)),
            message=message,
            evidence={
                "columns": public,
                "n_images": ctx.n,
                "n_flagged": len(flagged),
                "method": method,
            },
            sample_ids=list(ids),
            recommendation=REC_FLAGGED,
            references=_REFS,
        )
    ]


def metadata_table(ctx: AuditContext, config: MetadataShortcutConfig) -> pd.DataFrame:
    """Per-sample table: each tested column group's level and its out-of-fold score.

    Returns
    -------
    pandas.DataFrame
        N rows: ``sample_id``, then per group ``<column>`` (the level) and
        ``<column>_oof_score`` (the one-column model's out-of-fold probability
        of ``positive_class``).
    """
    entries = metadata_analysis(ctx, config)
    y = ctx.labels
    patients = ctx.manifest["patient_key"].astype(str).to_numpy()
    folds = probe_folds(
        y,
        patients,
        ctx.get("folds") if ctx.has("folds") else None,
        n_splits=config.n_splits,
        seed=config.seed,
    )
    table: dict[str, Any] = {"sample_id": ctx.sample_ids}
    for e in entries:
        name = e["columns"][0]
        levels = np.array([lv["level"] for lv in e["levels"]], dtype=object)
        table[name] = levels[e["_codes"]]
        scores = level_rate_scores(e["_codes"], y, folds, len(levels), ctx.n_classes)
        table[f"{name}_oof_score"] = scores[:, min(config.positive_class, ctx.n_classes - 1)]
    return pd.DataFrame(table)


SPEC = CheckSpec(
    name=NAME,
    func=check_metadata_shortcut,
    config_cls=MetadataShortcutConfig,
    requires=(),
    table=metadata_table,
    description="metadata columns that alone predict the label (one-column OOF AUC, "
    "permutation p, BH across columns, per-level prevalence)",
)
