"""Check ``class_balance_and_size``: are there enough images to trust the estimates?

A sensitivity, a specificity, or a per-subgroup performance figure is a
proportion; its precision depends on the number of images in the class (and
subgroup) it is computed from. This check counts the classes, the images per
patient and the subgroups (``site``, ``scanner``, ``sex``, ``view``, age bands,
whichever columns exist) and reports, for each, the half-width of the 95 %
Wilson interval that a per-class proportion (e.g. a sensitivity of 0.8) can
have with those counts.

The rule (precision of a per-class proportion)
-----------------------------------------------
A class (or a class within a subgroup) with ``n`` images supports a
sensitivity estimate of planning value ``p`` with a 95 % Wilson half-width
``h(p, n)``. The default asks ``h <= 0.10`` (warning) and flags ``h > 0.20``
as critical. At ``p = 0.8`` this needs ``n >= 60`` images for 0.10 and
``n >= 14`` for 0.20. This is Buderer's (1996, Acad Emerg Med 3:895)
sample-size rule for sensitivity and specificity, with the Wilson interval
(Wilson 1927; Brown, Cai & DasGupta 2001) in place of the Wald interval. When
patients contribute several images, the patients are the independent units:
the half-width is computed from the number of distinct patients
(``unit = 'patient'``), which gives the honest (wider) interval.

For binary tasks the check also reports Riley et al.'s (2020, BMJ 368:m441)
first criterion for developing a prediction model: the overall outcome
proportion must be estimable within a margin of 0.05, which needs
``n >= (1.96 / 0.05)^2 * phi * (1 - phi)`` participants. The events-per-variable
rules (Peduzzi et al. 1996) are not used: a deep network has no meaningful
count of candidate predictors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.stats import finite_or_none, n_for_wilson_half_width, wilson_half_width

__all__ = ["ClassBalanceAndSizeConfig", "check_class_balance_and_size", "size_table"]

NAME = "class_balance_and_size"

TITLE_CLASSES = "Smallest class '{name}': {n} {unit}s (per-class sensitivity ±{hw:.2f})"
TITLE_SUBGROUPS = "{n} subgroup(s) too small for per-subgroup estimates (±{hw:.2f} or wider)"
TITLE_SUBGROUPS_OK = "All {n} subgroups large enough for per-subgroup estimates (±{hw:.2f})"
TITLE_PATIENTS = "{n_img} images from {n_pat} patients (up to {max_per} images per patient)"
TITLE_RILEY = "Too few {unit}s to estimate the outcome proportion within ±{margin:.2f} (Riley 2020)"
RULE = (
    "95% Wilson interval half-width of a per-class proportion at planning value {p:.2f} "
    "(Buderer 1996 with Wilson 1927); warning above {warn:.2f}, critical above {crit:.2f}"
)

_REFS_SIZE = ["CLAIM:sample-size", "TRIPOD+AI:sample-size"]
_REFS_SUB = ["CLAIM:demographics", "TRIPOD+AI:fairness", "EU-AI-Act-10(2)(f)", "GMLP-3"]


@dataclass(frozen=True)
class ClassBalanceAndSizeConfig:
    """Settings of the ``class_balance_and_size`` check.

    Attributes
    ----------
    planning_proportion : float
        Expected sensitivity (or specificity) at which the precision is
        computed. 0.80: a typical operating point of diagnostic imaging AI;
        the half-width is largest at 0.5 (use 0.5 for a worst case).
    warn_half_width : float
        Half-width of the 95 % interval above which a class or subgroup is too
        small (warning). 0.10 is the precision commonly targeted in
        diagnostic-accuracy sample-size planning (Buderer 1996; Bujang &
        Adnan 2016, J Clin Diagn Res 10:YE01); wider intervals cannot tell a
        sensitivity of 0.80 from 0.70 or 0.90.
    critical_half_width : float
        Half-width above which the smallest class makes class-wise estimates
        meaningless (critical). 0.20 (about 14 images at 0.8, 24 at 0.5).
    unit : {'patient', 'image'}
        Count distinct patients (independent units, default) or images.
    subgroup_columns : tuple of str
        Manifest columns treated as subgroups when present (``age`` is cut
        into ``age_bands``).
    age_bands : tuple of float
        Edges of the age bands in years (left-closed), e.g. ``[0, 18)``.
    min_subgroup_share : float
        Subgroup levels smaller than this share of the data are listed as
        "rare" in the evidence (informational).
    riley_margin : float
        Margin of error for the overall outcome proportion (Riley et al. 2020,
        criterion 1: 0.05).
    max_listed : int
        Subgroup rows listed in the evidence.
    """

    planning_proportion: float = 0.80
    warn_half_width: float = 0.10
    critical_half_width: float = 0.20
    unit: Literal["patient", "image"] = "patient"
    subgroup_columns: tuple[str, ...] = ("site", "scanner", "sex", "view", "age")
    age_bands: tuple[float, ...] = (0, 18, 40, 65, 130)
    min_subgroup_share: float = 0.05
    riley_margin: float = 0.05
    max_listed: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.warn_half_width <= self.critical_half_width <= 0.5:
            raise ValueError(
                "class_balance_and_size needs 0 < warn_half_width <= critical_half_width <= 0.5;"
                f" got {self.warn_half_width} and {self.critical_half_width}"
            )
        if not 0 <= self.planning_proportion <= 1:
            raise ValueError(
                f"class_balance_and_size planning_proportion must be in [0, 1]; got "
                f"{self.planning_proportion}"
            )
        if list(self.age_bands) != sorted(self.age_bands) or len(self.age_bands) < 2:
            raise ValueError(
                f"class_balance_and_size age_bands must be >= 2 increasing edges; got {self.age_bands}"
            )


def _count_units(frame: pd.DataFrame, unit: str) -> pd.Series:
    """Units per class (``label``) in ``frame``: images, or distinct patients."""
    if unit == "image":
        return frame.groupby("label").size()
    return frame.groupby("label")["patient_key"].nunique()


def size_table(
    manifest: pd.DataFrame,
    class_names: list[str],
    *,
    unit: Literal["patient", "image"] = "patient",
    planning_proportion: float = 0.80,
    subgroups: dict[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """Units per class, overall and per subgroup level, with achievable precision.

    Parameters
    ----------
    manifest : pandas.DataFrame
        N rows with ``label`` and ``patient_key``.
    class_names : list of str
        K names.
    unit : {'patient', 'image'}
        What is counted.
    planning_proportion : float
        Planning value for :func:`audit.stats.wilson_half_width`.
    subgroups : dict of str to pandas.Series, optional
        Subgroup variable name -> N values (already banded; missing as ``<NA>``).

    Returns
    -------
    pandas.DataFrame
        One row per (``variable``, ``level``, ``class``): ``n_images``,
        ``n_units``, ``half_width`` (95 % Wilson). ``variable`` is ``'all'`` for
        the whole data set.
    """
    rows: list[dict[str, Any]] = []

    def _add(variable: str, level: str, frame: pd.DataFrame) -> None:
        images = frame.groupby("label").size()
        units = _count_units(frame, unit)
        for k, name in enumerate(class_names):
            n_units = int(units.get(k, 0))
            rows.append(
                {
                    "variable": variable, "level": level, "class": name,
                    "n_images": int(images.get(k, 0)), "n_units": n_units,
                    "half_width": float(wilson_half_width(planning_proportion, n_units)),
                }
            )

    _add("all", "all", manifest)
    for var, values in (subgroups or {}).items():
        levels = values.astype("string").fillna("<missing>")
        for level, frame in manifest.groupby(levels.to_numpy(), sort=True):
            _add(var, str(level), frame)
    return pd.DataFrame(rows)


def _subgroups(manifest: pd.DataFrame, config: ClassBalanceAndSizeConfig) -> dict[str, pd.Series]:
    out: dict[str, pd.Series] = {}
    for col in config.subgroup_columns:
        if col not in manifest.columns or manifest[col].isna().all():
            continue
        if col == "age":
            edges = list(config.age_bands)
            labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
            out["age_band"] = pd.cut(pd.to_numeric(manifest[col], errors="coerce"), edges,
                                     right=False, labels=labels).astype("string")
        else:
            out[col] = manifest[col].astype("string")
    return out


def check_class_balance_and_size(
    ctx: AuditContext, config: ClassBalanceAndSizeConfig
) -> list[Finding]:
    """Class counts, images per patient, subgroup sizes and the precision they allow.

    Parameters
    ----------
    ctx : AuditContext
        Only the manifest is used.
    config : ClassBalanceAndSizeConfig
        Settings.

    Returns
    -------
    list of Finding
        Classes (severity from the smallest class), subgroups (warning when a
        subgroup level is too small, pass otherwise; only when subgroup columns
        exist), images per patient (info), and Riley's criterion for binary
        tasks (warning when not met).
    """
    m = ctx.manifest
    names = ctx.class_names
    unit = config.unit
    p = config.planning_proportion
    rule = RULE.format(p=p, warn=config.warn_half_width, crit=config.critical_half_width)
    n_warn = n_for_wilson_half_width(p, config.warn_half_width) if 0 < p < 1 else 1
    n_crit = n_for_wilson_half_width(p, config.critical_half_width) if 0 < p < 1 else 1
    subgroups = _subgroups(m, config)
    table = size_table(m, names, unit=unit, planning_proportion=p, subgroups=subgroups)
    overall = table[table["variable"] == "all"].reset_index(drop=True)

    # -- classes ------------------------------------------------------------------------
    smallest = overall.loc[overall["n_units"].idxmin()]
    largest = overall.loc[overall["n_units"].idxmax()]
    hw = float(smallest["half_width"])
    if hw > config.critical_half_width:
        severity = "critical"
    elif hw > config.warn_half_width:
        severity = "warning"
    else:
        severity = "pass"
    ratio = (float(largest["n_images"]) / float(smallest["n_images"])
             if smallest["n_images"] > 0 else None)
    classes = [
        {"class": r["class"], "n_images": int(r["n_images"]), f"n_{unit}s": int(r["n_units"]),
         "share_of_images": round(r["n_images"] / max(ctx.n, 1), 4),
         "half_width": finite_or_none(r["half_width"], 4)}
        for _, r in overall.iterrows()
    ]
    empty = [c["class"] for c in classes if c["n_images"] == 0]
    msg_unit = "patients" if unit == "patient" else "images"
    if severity == "pass":
        message = (
            f"Every class has enough {msg_unit} to estimate its sensitivity to within "
            f"±{hw:.2f} (95% CI at a sensitivity of {p:.0%}); the smallest class, "
            f"'{smallest['class']}', has {int(smallest['n_units'])}."
        )
    else:
        message = (
            f"The smallest class, '{smallest['class']}', has only {int(smallest['n_units'])} "
            f"{msg_unit}: a sensitivity of about {p:.0%} measured on them is uncertain by "
            f"±{hw:.2f} (95% CI). About {n_warn} {msg_unit} per class are needed for ±"
            f"{config.warn_half_width:.2f}."
            + (f" Classes with no images at all: {empty}." if empty else "")
        )
    findings = [
        Finding(
            check=NAME, severity=severity,  # type: ignore[arg-type]
            title=TITLE_CLASSES.format(name=smallest["class"], n=int(smallest["n_units"]),
                                       unit=unit, hw=hw) if np.isfinite(hw)
            else f"Class '{smallest['class']}' has no images",
            message=message,
            evidence={
                "classes": classes,
                "n_images": ctx.n,
                "imbalance_ratio": round(ratio, 3) if ratio is not None else None,
                "minority_class": smallest["class"],
                "minority_half_width": finite_or_none(hw, 4),
                f"{unit}s_needed_for_warn_half_width": n_warn,
                f"{unit}s_needed_for_critical_half_width": n_crit,
                "rule": rule,
                "method": "class counts; Wilson half-width at the planning proportion",
            },
            recommendation=(
                "Collect more cases of the small class before reporting per-class accuracy, "
                "or report its estimates with their (wide) confidence intervals."
                if severity != "pass" else "Report the class counts per partition (CLAIM)."
            ),
            references=[*_REFS_SIZE, "CLAIM:case-flow"],
        )
    ]

    # -- subgroups -----------------------------------------------------------------------
    if subgroups:
        sub = table[table["variable"] != "all"]
        # the '<missing>' level is counted and listed but is not a subgroup to compare
        small = sub[(sub["half_width"] > config.warn_half_width) & (sub["level"] != "<missing>")]
        small = small.sort_values(["half_width", "variable", "level"], ascending=[False, True, True])
        levels = sub.groupby(["variable", "level"])["n_images"].sum()
        rare = [{"variable": v, "level": lv, "n_images": int(n),
                 "share": round(n / max(ctx.n, 1), 4)}
                for (v, lv), n in levels.items() if n / max(ctx.n, 1) < config.min_subgroup_share]
        n_small_levels = small.groupby(["variable", "level"]).ngroups
        listed = [
            {"variable": r["variable"], "level": r["level"], "class": r["class"],
             "n_images": int(r["n_images"]), f"n_{unit}s": int(r["n_units"]),
             "half_width": finite_or_none(r["half_width"], 4)}
            for _, r in small.head(config.max_listed).iterrows()
        ]
        counts = {
            var: {str(lv): int(n) for lv, n in
                  levels.loc[var].items()} for var in levels.index.get_level_values(0).unique()
        }
        sample_rows: list[int] = []
        for var, lv in small[["variable", "level"]].drop_duplicates().itertuples(index=False):
            vals = subgroups[var].astype("string").fillna("<missing>").to_numpy()
            sample_rows.extend(np.flatnonzero(vals == lv).tolist())
        sample_rows = list(dict.fromkeys(sample_rows))[: config.max_listed]
        ids = ctx.sample_ids
        known = sub[sub["level"] != "<missing>"]
        worst = float(known["half_width"].max()) if len(known) else float("nan")
        if n_small_levels:
            findings.append(
                Finding(
                    check=NAME, severity="warning",
                    title=TITLE_SUBGROUPS.format(n=n_small_levels, hw=config.warn_half_width),
                    message=(
                        f"{n_small_levels} subgroup(s) (by {', '.join(subgroups)}) have so few "
                        f"{msg_unit} of some class that a per-subgroup sensitivity or specificity "
                        f"would be uncertain by more than ±{config.warn_half_width:.2f}. "
                        "Differences between these subgroups cannot be judged reliably."
                    ),
                    evidence={"subgroup_counts": counts, "too_small": listed,
                              "n_too_small_levels": n_small_levels, "rare_levels": rare,
                              "rule": rule,
                              "method": "per subgroup level and class: Wilson half-width at the "
                              "planning proportion"},
                    sample_ids=[str(ids[i]) for i in sample_rows],
                    recommendation=(
                        "Report subgroup results with confidence intervals and treat them as "
                        "exploratory; collect more data from the small subgroups before claiming "
                        "equal performance (EU AI Act Art. 10(2)(f) bias examination)."
                    ),
                    references=_REFS_SUB,
                )
            )
        else:
            findings.append(
                Finding(
                    check=NAME, severity="pass",
                    title=TITLE_SUBGROUPS_OK.format(n=len(levels), hw=worst),
                    message=(
                        f"Every subgroup (by {', '.join(subgroups)}) has enough {msg_unit} of "
                        f"every class for per-subgroup estimates within ±{worst:.2f}."
                    ),
                    evidence={"subgroup_counts": counts, "rare_levels": rare, "rule": rule,
                              "method": "per subgroup level and class: Wilson half-width"},
                    recommendation="Report performance per subgroup with confidence intervals.",
                    references=_REFS_SUB,
                )
            )

    # -- images per patient -----------------------------------------------------------------
    per_patient = m.groupby("patient_key").size()
    n_pat = len(per_patient)
    max_per = int(per_patient.max()) if n_pat else 0
    top_share = float(per_patient.max() / max(ctx.n, 1)) if n_pat else 0.0
    findings.append(
        Finding(
            check=NAME, severity="info",
            title=TITLE_PATIENTS.format(n_img=ctx.n, n_pat=n_pat, max_per=max_per),
            message=(
                f"The {ctx.n} images come from {n_pat} patients "
                f"(median {per_patient.median():g} images per patient, at most {max_per}). "
                "Images of one patient are not independent: the number of patients, not of "
                "images, limits how precise any estimate can be."
            ),
            evidence={
                "n_images": ctx.n, "n_patients": n_pat,
                "images_per_patient": {
                    "mean": round(float(per_patient.mean()), 3) if n_pat else None,
                    "median": float(per_patient.median()) if n_pat else None,
                    "max": max_per,
                    "share_of_images_in_largest_patient": round(top_share, 4),
                    "n_patients_with_one_image": int((per_patient == 1).sum()),
                },
                "method": "images per patient_key",
            },
            recommendation="Keep all images of a patient in one partition and report patient "
            "counts per partition (CLAIM).",
            references=["CLAIM:partitions", "CLAIM:case-flow"],
        )
    )

    # -- Riley criterion 1 (binary) ---------------------------------------------------------------
    if len(names) == 2 and ctx.n > 0:
        n_units = int(m["patient_key"].nunique()) if unit == "patient" else ctx.n
        phi = float(np.mean(ctx.labels == 1))
        needed = int(np.ceil((1.959964 / config.riley_margin) ** 2 * phi * (1 - phi)))
        if n_units < needed:
            findings.append(
                Finding(
                    check=NAME, severity="warning",
                    title=TITLE_RILEY.format(unit=unit, margin=config.riley_margin),
                    message=(
                        f"With {n_units} {msg_unit} the share of '{names[1]}' cases ({phi:.1%}) "
                        f"is known only to about ±{1.96 * np.sqrt(phi * (1 - phi) / n_units):.2f}; "
                        f"{needed} are needed for ±{config.riley_margin:.2f}, the minimum Riley et "
                        "al. (2020) set for developing a prediction model."
                    ),
                    evidence={"n_units": n_units, "outcome_proportion": round(phi, 4),
                              "n_needed": needed, "margin": config.riley_margin,
                              "method": "Riley et al. 2020 BMJ 368:m441, criterion 1: "
                              "n = (1.96/margin)^2 * phi * (1 - phi)"},
                    recommendation="Treat all estimates as preliminary; collect more data.",
                    references=_REFS_SIZE,
                )
            )
    return findings


SPEC = CheckSpec(
    name=NAME,
    func=check_class_balance_and_size,
    config_cls=ClassBalanceAndSizeConfig,
    requires=(),
    description="class and subgroup sizes and the precision they allow (Wilson, Riley 2020)",
)
