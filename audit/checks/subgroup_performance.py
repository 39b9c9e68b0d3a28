"""Check ``subgroup_performance``: for whom does the model work worse?

For every level of every grouping column (``site``, ``scanner``, ``sex``, age
bands, ``view``, acquisition fields and user columns; columns that are the same
partition of the rows are one group, reported with all their names) the check
reports, on the out-of-fold rows:

* ``n``, the **prevalence** of the positive class (Wilson 95 % interval);
* the **AUC** (DeLong, or a patient-cluster percentile bootstrap when patients
  repeat);
* **sensitivity** and **specificity** at the one operating threshold of the run
  (:func:`audit.operating_point.choose_operating_point`, Youden on all
  out-of-fold rows by default), Wilson or patient-bootstrap intervals;
* **calibration-in-the-large**: mean predicted probability minus the observed
  prevalence (patient-cluster bootstrap);
* the **AUC gap** to the rest of the data (level minus rest), its 95 % interval
  and a two-sided p-value from the normal approximation for two independent
  AUCs (standard errors from each interval), then Benjamini-Hochberg across all
  levels tested.

A level with fewer than ``min_per_class`` patients of either class is labelled
``too_small``: its counts are listed, its performance is not estimated, and it
is never flagged. A level is flagged when its AUC is lower than the rest's by at
least ``min_gap`` and the gap's q-value is below ``alpha``, and only when the model
separates the classes on the whole data (overall AUC interval above 0.5: otherwise
per-level AUCs scatter around 0.5 by chance). Multi-class runs: the
AUC is the macro one-vs-rest AUC, sensitivity and specificity are those of
``positive_class`` against the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, norm

from audit._probes import (
    GroupColumn,
    auc_estimate,
    group_columns,
    same_partitions,
)
from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.metrics import ClusterBootstrap, percentile_interval
from audit.operating_point import choose_operating_point, metrics_at_threshold
from audit.stats import Estimate, finite_or_none, wilson_ci

__all__ = ["SPEC", "SubgroupPerformanceConfig", "check_subgroup_performance", "subgroup_results"]

NAME = "subgroup_performance"

TITLE_FLAGGED = "The model works worse for {col} = '{level}' (AUC {auc} vs {rest} for the rest)"
TITLE_PASS = "No subgroup with clearly worse performance ({n} subgroups, {small} too small)"
MSG_FLAGGED = (
    "For images with {col} = '{level}' (n = {n}, {prev:.0%} '{cls}') the model's AUC is {auc}, "
    "against {rest} for all other images: a gap of {gap} (q = {q:.3g}). At the operating "
    "threshold it finds {sens} of the '{cls}' cases in this group and correctly clears {spec} of "
    "the others.{more}"
)
MSG_PASS = (
    "Across {n} subgroups (by {cols}) no subgroup's AUC is lower than the rest's by {min_gap:.2f} "
    "or more after correction for multiple testing.{small}{nodisc}"
)
REC = (
    "Report performance per subgroup with confidence intervals; collect more data from the "
    "weaker subgroup, check its images and labels (acquisition, case mix), and consider a "
    "subgroup-specific threshold only with separate validation."
)
_REFS = [
    "CLAIM:evaluation",
    "CLAIM:demographics",
    "TRIPOD+AI:fairness",
    "EU-AI-Act-10(2)(f)",
    "GMLP-3",
]


@dataclass(frozen=True)
class SubgroupPerformanceConfig:
    """Settings of :func:`check_subgroup_performance`.

    Attributes
    ----------
    columns : tuple of str, default ()
        Grouping columns; empty: every column that describes groups (as
        ``metadata_shortcut``).
    exclude_columns : tuple of str, default ()
    age_bands : tuple of float, default (0, 18, 40, 65, 130)
        Age bands (those of ``class_balance_and_size``).
    numeric_bins, max_levels : int, default 5, 20
        As ``metadata_shortcut``.
    min_per_class : int, default 10
        Fewest patients of each class a level needs for its AUC, sensitivity
        and specificity to be estimated: with 10 cases a sensitivity of 0.8
        has a 95 % Wilson interval of 0.49-0.94, about the widest that still
        says anything; smaller levels are listed as too small, never flagged.
    min_gap : float, default 0.05
        AUC gap (rest minus level) worth a warning: five points of AUC, the
        smallest difference usually treated as clinically relevant.
    critical_gap : float, default 0.15
        Gap from which the model is of a different quality class for the group.
    alpha : float, default 0.05
        False-discovery rate (Benjamini-Hochberg across levels).
    threshold_method : {'youden', 'sensitivity', 'specificity', 'fixed'}, default 'youden'
        How the one operating threshold is chosen (:mod:`audit.operating_point`).
    threshold_target : float or None, default None
        Target of the threshold method (required except for Youden).
    positive_class : int, default 1
    n_boot : int, default 500
        Patient-cluster bootstrap replicates.
    seed : int, default 0
    max_listed : int, default 200
        Sample ids of the worst flagged level listed.
    """

    columns: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    age_bands: tuple[float, ...] = (0, 18, 40, 65, 130)
    numeric_bins: int = 5
    max_levels: int = 20
    min_per_class: int = 10
    min_gap: float = 0.05
    critical_gap: float = 0.15
    alpha: float = 0.05
    threshold_method: Literal["youden", "sensitivity", "specificity", "fixed"] = "youden"
    threshold_target: float | None = None
    positive_class: int = 1
    n_boot: int = 500
    seed: int = 0
    max_listed: int = 200

    def __post_init__(self) -> None:
        if not 0 < self.min_gap <= self.critical_gap:
            raise ValueError(
                f"subgroup_performance needs 0 < min_gap <= critical_gap; got "
                f"{self.min_gap} and {self.critical_gap}"
            )
        if self.min_per_class < 2:
            raise ValueError(
                f"subgroup_performance min_per_class must be >= 2; got {self.min_per_class}"
            )


def _calibration(
    y_pos: np.ndarray, p: np.ndarray, patients: np.ndarray, config: SubgroupPerformanceConfig
) -> Estimate:
    diff = p - y_pos
    point = float(diff.mean())
    boot = ClusterBootstrap(patients, config.n_boot, config.seed)
    reps = [float((w * diff).sum() / w.sum()) for w in boot.weights()]
    return percentile_interval(
        point,
        reps,
        "mean predicted minus observed, patient-level percentile bootstrap over clusters",
    )


def _gap(a: Estimate, b: Estimate) -> tuple[Estimate, float]:
    """Difference of two independent AUCs (normal approximation) and its two-sided p."""

    def se(e: Estimate) -> float:
        return (e.high - e.low) / (2 * 1.959964)

    d = a.estimate - b.estimate
    s = float(np.hypot(se(a), se(b)))
    method = (
        "difference of two independent AUCs, normal approximation with standard errors "
        "from each 95% interval"
    )
    if not (np.isfinite(d) and np.isfinite(s)) or s <= 0:
        return Estimate(d, np.nan, np.nan, 0.95, method), float("nan")
    p = float(2 * norm.sf(abs(d) / s))
    return Estimate(d, d - 1.959964 * s, d + 1.959964 * s, 0.95, method), p


def _level_entry(
    col: list[str],
    level: str,
    rows: np.ndarray,
    y: np.ndarray,
    probs: np.ndarray,
    patients: np.ndarray,
    threshold: float,
    config: SubgroupPerformanceConfig,
) -> dict[str, Any]:
    pos_class = config.positive_class
    yp = y[rows] == pos_class
    n = int(rows.sum())
    n_pos_pat = len(np.unique(patients[rows][yp]))
    n_neg_pat = len(np.unique(patients[rows][~yp]))
    too_small = min(n_pos_pat, n_neg_pat) < config.min_per_class
    entry: dict[str, Any] = {
        "column": col[0],
        "columns": col,
        "level": level,
        "n": n,
        "n_patients_positive": n_pos_pat,
        "n_patients_negative": n_neg_pat,
        "prevalence": wilson_ci(int(yp.sum()), n).to_dict(),
        "auc": None,
        "sensitivity": None,
        "specificity": None,
        "calibration_in_the_large": None,
        "auc_gap": None,
        "too_small": bool(too_small),
        "p_value": None,
        "q_value": None,
        "flagged": False,
    }
    if too_small:
        return entry
    auc = auc_estimate(y[rows], probs[rows], patients[rows], n_boot=config.n_boot, seed=config.seed)
    rest = ~rows
    auc_rest = auc_estimate(
        y[rest], probs[rest], patients[rest], n_boot=config.n_boot, seed=config.seed
    )
    sens, spec = metrics_at_threshold(
        y[rows],
        probs[rows],
        threshold,
        positive_class=pos_class,
        groups=patients[rows],
        n_boot=config.n_boot,
        seed=config.seed,
    )
    cal = _calibration(yp.astype(float), probs[rows, pos_class], patients[rows], config)
    gap, p = _gap(auc, auc_rest)
    entry.update(
        auc=auc.to_dict(),
        auc_rest=auc_rest.to_dict(),
        sensitivity=sens.to_dict(),
        specificity=spec.to_dict(),
        calibration_in_the_large=cal.to_dict(),
        auc_gap=gap.to_dict(),
        p_value=finite_or_none(p, 6),
    )
    return entry


def subgroup_results(ctx: AuditContext, config: SubgroupPerformanceConfig) -> dict[str, Any]:
    """Every level of every grouping column (see the module docstring).

    Returns
    -------
    dict
        ``groups`` (list of level entries), ``threshold`` (the operating point's
        dict), ``n_rows`` (out-of-fold rows used), ``_codes`` (private).
    """
    y_all = ctx.labels
    probs_all = np.asarray(ctx.get("pred_probs"), dtype=np.float64)
    patients_all = ctx.manifest["patient_key"].astype(str).to_numpy()
    keep = (np.asarray(ctx.get("folds")) >= 0) if ctx.has("folds") else np.ones(ctx.n, bool)
    if keep.sum() < 2 or len(np.unique(y_all[keep])) < 2:
        keep = np.ones(ctx.n, bool)
    y, probs, patients = y_all[keep], probs_all[keep], patients_all[keep]
    op = choose_operating_point(
        y,
        probs,
        positive_class=config.positive_class,
        method=config.threshold_method,
        target=config.threshold_target,
        groups=patients,
        seed=config.seed,
    )
    cols = group_columns(
        ctx.manifest,
        columns=config.columns or None,
        exclude=config.exclude_columns,
        age_bands=config.age_bands,
        numeric_bins=config.numeric_bins,
        max_levels=config.max_levels,
    )
    groups: list[dict[str, Any]] = []
    codes_of: dict[str, GroupColumn] = {}
    for part in same_partitions(cols):
        col = part[0]
        names = [c.name for c in part]
        codes_of[col.name] = col
        codes = col.codes[keep]
        for c, level in enumerate(col.levels):
            rows = codes == c
            if not rows.any():
                continue
            groups.append(
                _level_entry(names, level, rows, y, probs, patients, op.threshold, config)
            )
    overall = auc_estimate(y, probs, patients, n_boot=config.n_boot, seed=config.seed)
    # A model that does not separate the classes overall (AUC interval reaching 0.5) has
    # subgroup AUCs scattered around 0.5 by chance: a "gap" between them says nothing
    # about who the model serves worse, so no level is flagged then (q-values still listed).
    discriminates = bool(np.isfinite(overall.low) and overall.low > 0.5)
    tested = [g for g in groups if g["p_value"] is not None]
    if tested:
        q = false_discovery_control([g["p_value"] for g in tested], method="bh")
        for g, qv in zip(tested, q):
            g["q_value"] = round(float(qv), 6)
            gap = g["auc_gap"]["estimate"]
            g["flagged"] = bool(
                discriminates and qv < config.alpha and gap is not None and gap <= -config.min_gap
            )
    return {
        "groups": groups,
        "overall": {"auc": overall.to_dict(), "n": int(keep.sum()), "discriminates": discriminates},
        "threshold": op.to_dict(),
        "n_rows": int(keep.sum()),
        "_codes": codes_of,
        "_keep": keep,
    }


def _txt(e: dict[str, Any] | None) -> str:
    if e is None or e["estimate"] is None:
        return "n/a"
    if e["ci_low"] is None:
        return f"{e['estimate']:.2f}"
    return f"{e['estimate']:.2f} (95% CI {e['ci_low']:.2f} to {e['ci_high']:.2f})"


def _pct(e: dict[str, Any] | None) -> str:
    if e is None or e["estimate"] is None:
        return "n/a"
    if e["ci_low"] is None:
        return f"{e['estimate']:.0%}"
    return f"{e['estimate']:.0%} ({e['ci_low']:.0%}-{e['ci_high']:.0%})"


def check_subgroup_performance(
    ctx: AuditContext, config: SubgroupPerformanceConfig
) -> list[Finding]:
    """Per-subgroup AUC, sensitivity, specificity and calibration, and the gap to the rest.

    Parameters
    ----------
    ctx : AuditContext
        Needs ``pred_probs`` ``(N, K)``; uses ``folds`` (out-of-fold rows only).
    config : SubgroupPerformanceConfig

    Returns
    -------
    list of Finding
        One finding; ``evidence["groups"]`` lists every level (``column``,
        ``level``, ``n``, ``prevalence``, ``auc``, ``sensitivity``,
        ``specificity``, ``calibration_in_the_large``, ``auc_gap``,
        ``too_small``, ``q_value``, ``flagged``) and ``evidence["overall"]``
        (``auc`` of all out-of-fold rows, ``n``). Warning (critical from
        ``critical_gap``) when a level is flagged, else pass.
    """
    res = subgroup_results(ctx, config)
    groups = res["groups"]
    method = {
        "rows": f"out-of-fold rows ({res['n_rows']})",
        "threshold": f"one operating threshold for all groups: {config.threshold_method} on all "
        "out-of-fold rows (audit.operating_point)",
        "auc": "DeLong, or patient-level percentile bootstrap over clusters when patients repeat",
        "sensitivity_specificity": "at the threshold; Wilson, or patient-cluster bootstrap",
        "calibration_in_the_large": "mean predicted probability minus observed prevalence, "
        "patient-cluster bootstrap",
        "gap": "AUC(level) - AUC(rest), normal approximation for independent AUCs; "
        "Benjamini-Hochberg across levels (scipy.stats.false_discovery_control)",
        "too_small": f"fewer than {config.min_per_class} patients of either class: not "
        "estimated, never flagged",
        "rule": f"flag when the level's AUC is lower by >= {config.min_gap:.2f} with q < "
        f"{config.alpha:g} and the model's overall AUC interval lies above 0.5; critical from "
        f"a gap of {config.critical_gap:.2f}",
    }
    evidence = {
        "groups": groups,
        "overall": res["overall"],
        "threshold": res["threshold"],
        "method": method,
    }
    flagged = sorted([g for g in groups if g["flagged"]], key=lambda g: g["auc_gap"]["estimate"])
    n_small = sum(g["too_small"] for g in groups)
    cls_idx = min(config.positive_class, ctx.n_classes - 1)
    cls = ctx.class_names[cls_idx]
    if not flagged:
        cols = sorted({g["column"] for g in groups})
        small = (
            (
                f" {n_small} subgroup(s) were too small to judge (fewer than "
                f"{config.min_per_class} patients of a class): "
                + ", ".join(
                    f"{g['column']}='{g['level']}' (n={g['n']})" for g in groups if g["too_small"]
                )[:600]
                + "."
            )
            if n_small
            else ""
        )
        return [
            Finding(
                check=NAME,
                severity="pass",
                title=TITLE_PASS.format(n=len(groups), small=n_small),
                message=MSG_PASS.format(
                    n=len(groups),
                    cols=", ".join(cols) or "none",
                    min_gap=config.min_gap,
                    small=small,
                    nodisc=""
                    if res["overall"]["discriminates"]
                    else " Gaps were not judged: the model does not separate the classes on "
                    f"the whole data (AUC {_txt(res['overall']['auc'])}), so its per-subgroup "
                    "AUCs scatter around 0.5 by chance.",
                ),
                evidence=evidence,
                references=_REFS,
                recommendation="Report performance per subgroup with intervals.",
            )
        ]
    top = flagged[0]
    gap = top["auc_gap"]["estimate"]
    severity = "critical" if -gap >= config.critical_gap else "warning"
    more = ""
    if len(flagged) > 1:
        more = (
            " Also worse: "
            + "; ".join(
                f"{g['column']} = '{g['level']}' (gap {g['auc_gap']['estimate']:.2f})"
                for g in flagged[1:6]
            )
            + "."
        )
    col = res["_codes"][top["column"]]
    lvl = col.levels.index(top["level"])
    ids = ctx.sample_ids[res["_keep"] & (col.codes == lvl)][: config.max_listed]
    return [
        Finding(
            check=NAME,
            severity=severity,  # type: ignore[arg-type]
            title=TITLE_FLAGGED.format(
                col=top["column"],
                level=top["level"],
                auc=f"{top['auc']['estimate']:.2f}",
                rest=f"{top['auc_rest']['estimate']:.2f}",
            ),
            message=MSG_FLAGGED.format(
                col=top["column"],
                level=top["level"],
                n=top["n"],
                prev=top["prevalence"]["estimate"],
                cls=cls,
                auc=_txt(top["auc"]),
                rest=_txt(top["auc_rest"]),
                gap=_txt(top["auc_gap"]),
                q=top["q_value"],
                sens=_pct(top["sensitivity"]),
                spec=_pct(top["specificity"]),
                more=more,
            ),
            evidence=evidence,
            sample_ids=list(ids),
            recommendation=REC,
            references=_REFS,
        )
    ]


def subgroup_table(ctx: AuditContext, config: SubgroupPerformanceConfig) -> pd.DataFrame:
    """Per-group table: one row per (column, level) with its numbers.

    Returns
    -------
    pandas.DataFrame
        Columns ``column``, ``level``, ``n``, ``prevalence``, ``auc``,
        ``auc_low``, ``auc_high``, ``sensitivity``, ``specificity``,
        ``calibration_in_the_large``, ``auc_gap``, ``q_value``, ``too_small``,
        ``flagged`` (estimates only; intervals in the finding).
    """

    def est(e: dict[str, Any] | None, key: str = "estimate") -> float:
        return np.nan if e is None or e[key] is None else float(e[key])

    rows = [
        {
            "column": g["column"],
            "level": g["level"],
            "n": g["n"],
            "prevalence": est(g["prevalence"]),
            "auc": est(g["auc"]),
            "auc_low": est(g["auc"], "ci_low"),
            "auc_high": est(g["auc"], "ci_high"),
            "sensitivity": est(g["sensitivity"]),
            "specificity": est(g["specificity"]),
            "calibration_in_the_large": est(g["calibration_in_the_large"]),
            "auc_gap": est(g["auc_gap"]),
            "q_value": np.nan if g["q_value"] is None else g["q_value"],
            "too_small": g["too_small"],
            "flagged": g["flagged"],
        }
        for g in subgroup_results(ctx, config)["groups"]
    ]
    return pd.DataFrame(rows)


SPEC = CheckSpec(
    name=NAME,
    func=check_subgroup_performance,
    config_cls=SubgroupPerformanceConfig,
    requires=("pred_probs",),
    model_based=True,
    description="per-subgroup AUC, sensitivity/specificity at the one operating threshold, "
    "calibration-in-the-large and the gap to the rest (BH); small groups labelled",
)
