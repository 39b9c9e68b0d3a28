"""Check ``masking_test``: does the model still work with the anatomy hidden?

Training re-scores every out-of-fold image with parts of it replaced by the
image mean (:mod:`audit.masking`: ``center_masked`` hides the central 60 % box,
``border_only`` keeps only a 12 % frame, ``corners_masked`` hides the four
corner squares where markers and text sit) and writes
``oof/masked/<variant>.npy``. A model that reads the disease should fall to
about AUC 0.5 when the anatomy is hidden; one that keeps a high AUC with the
anatomy masked, or on the border alone, uses signal outside the anatomy
(markers, borders, exposure: Zech et al. 2018; DeGrave et al. 2021). A model
that **loses** AUC when only the corners are hidden was reading the corners.

For each variant: the out-of-fold AUC on the original and on the masked images
(each with a 95 % interval: DeLong, or a patient bootstrap when patients
repeat) and the **paired difference** ``original - masked`` with a
patient-cluster percentile bootstrap (:func:`audit.stats.bootstrap_ci` with
``groups``; both AUCs are recomputed on the same resampled patients). Rows with
``folds == -1`` (held-out or external rows scored by the fold ensemble) are
reported separately; runs without masked arrays skip the check (the engine
records why).

Severity: a variant that hides only the periphery
(``periphery_hidden_variants``) whose AUC drops by at least ``warn_drop`` with a
difference interval above 0 is a warning (critical from ``critical_drop``), in
every image layout. A variant that hides the anatomy
(``anatomy_hidden_variants``) whose masked AUC has a lower 95 % bound of at
least ``critical_masked_auc`` is critical (at least ``warn_masked_auc``:
warning) **only when the images are radiograph-like** (anatomy in the centre, a
periphery without anatomy: ``anatomy_layout`` resolved to ``"centered"``). On
images whose anatomy fills the frame (ultrasound, microscopy, photographs) the
masked images still show anatomy, so a high AUC there is no evidence of a
shortcut: the numbers stay in the evidence and at most an ``info`` finding says
the test is inconclusive for that layout. ``anatomy_layout = "auto"`` decides
from the run's ``dicom_modality`` column (:func:`resolve_anatomy_layout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from audit._probes import (
    auc_estimate,
)
from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.metrics import ClusterBootstrap, percentile_interval, weighted_macro_auc_fn
from audit.stats import finite_or_none

__all__ = [
    "CENTERED_MODALITIES",
    "FULL_FRAME_MODALITIES",
    "SPEC",
    "MaskingTestConfig",
    "check_masking_test",
    "masking_results",
    "resolve_anatomy_layout",
]

NAME = "masking_test"

AnatomyLayout = Literal["auto", "centered", "full_frame"]
#: DICOM Modality (0008,0060) codes whose images are radiograph-like for the masking
#: test: the anatomy sits in the centre and the periphery holds collimation, air, the
#: table or the shutter (projection radiography CR / DX, fluoroscopy RF, angiography XA;
#: the axial slices of CT, MR, PET (PT) and nuclear medicine (NM), body surrounded by air).
CENTERED_MODALITIES = frozenset({"CR", "DX", "RF", "XA", "CT", "MR", "PT", "NM"})
#: Codes whose anatomy fills the frame or is not centred: ultrasound (US), slide and
#: general microscopy (SM, GM), endoscopy (ES), external-camera and ophthalmic
#: photography (XC, OP), mammography (MG: the breast lies against one edge). Every code
#: in neither set is treated as full-frame too (the rule is only safe where the layout
#: is known to be centred).
FULL_FRAME_MODALITIES = frozenset({"US", "SM", "GM", "ES", "XC", "OP", "MG"})

DESCRIPTION = {
    "center_masked": "the centre of the image (where the anatomy is) hidden",
    "border_only": "only the outer border of the image visible",
    "corners_masked": "the four corners (where markers and text sit) hidden",
}
TITLE_HIGH = "The model still works with the anatomy hidden ({variant}: AUC {auc})"
TITLE_DROP = "The model loses accuracy when only the corners are hidden ({variant}: AUC {auc})"
TITLE_PASS = "Masking test: the model relies on the anatomy ({n} variants)"
TITLE_PASS_CORNERS = "Masking test: hiding the corners changes little ({n} variants)"
TITLE_INCONCLUSIVE = (
    "Masking test inconclusive with the anatomy hidden: image layout {layout} ({variants})"
)
MSG_HIGH = (
    "With {what}, the model still separates the classes with AUC {auc} (full images: {orig}; "
    "difference {diff}). A model that looked at the disease would fall to about 0.5: this one "
    "uses signal outside the anatomy, such as a burned-in marker, a border or the exposure of "
    "one site."
)
MSG_DROP = (
    "With {what}, the model's AUC falls from {orig} to {auc} (difference {diff}): part of what it "
    "relies on sits in the image corners, where markers and text are, not in the anatomy."
)
MSG_PASS = (
    "Hiding the anatomy brings the model close to chance and hiding the corners changes little: "
    "{summary}."
)
MSG_PASS_CORNERS = (
    "Hiding the corners changes little: {summary}. The anatomy-hidden variants are in the "
    "evidence but not graded: {why}."
)
MSG_INCONCLUSIVE = (
    "With {what}, the model still separates the classes with AUC {auc} (full images: {orig}). "
    "This part of the test assumes radiograph-like images, with the anatomy in the centre and "
    "no anatomy at the periphery; {why}, so the masked images may still show anatomy and a "
    "high AUC is no evidence of a shortcut. The corner test still applies. If these images are "
    'radiograph-like, set anatomy_layout = "centered" in the [masking_test] section of the '
    "audit's TOML settings and re-run the audit."
)
WHY_LAYOUT = {
    "full_frame": "the anatomy of these images fills the frame ({how})",
    "unknown": "the layout of these images is not known ({how})",
}
REC = (
    "Find the cue (image_property_shortcut lists marker and border statistics and example "
    "images); crop or mask it before training, balance the sites, and re-run the audit."
)
_REFS = ["CLAIM:failure-analysis", "CLAIM:model", "EU-AI-Act-10(2)(g)", "GMLP-8"]


@dataclass(frozen=True)
class MaskingTestConfig:
    """Settings of :func:`check_masking_test`.

    Attributes
    ----------
    anatomy_layout : {'auto', 'centered', 'full_frame'}, default 'auto'
        Where the anatomy sits in the images. ``'centered'``: radiograph-like
        (anatomy in the centre, periphery without anatomy); only then does a
        high AUC with the anatomy hidden grade warning / critical.
        ``'full_frame'``: the anatomy fills the frame (ultrasound, microscopy,
        photographs); the anatomy-hidden numbers are reported, not graded.
        ``'auto'``: from the manifest's ``dicom_modality`` column
        (:func:`resolve_anatomy_layout`); without it the layout is unknown and
        treated like ``'full_frame'``. The corner test applies in every layout.
    anatomy_hidden_variants : tuple of str, default ('center_masked', 'border_only')
        Variants in which the anatomy is hidden: a high AUC is the warning sign.
    periphery_hidden_variants : tuple of str, default ('corners_masked',)
        Variants in which only the periphery is hidden: a drop is the warning sign.
    warn_masked_auc : float, default 0.55
        Lower 95 % bound of the masked AUC from which the model clearly works
        without the anatomy (warning): with the anatomy hidden any AUC clearly
        above chance comes from non-anatomical cues; a site-prevalence shortcut
        alone gives about 0.6 (as much as the site itself predicts), so the bar
        must sit below that to see it.
    critical_masked_auc : float, default 0.70
        Lower bound from which the non-anatomical signal alone is an
        "acceptable" classifier (Hosmer & Lemeshow): critical.
    warn_drop : float, default 0.05
        AUC lost when only the periphery is hidden (difference interval above 0):
        warning. Five points is the smallest change usually called clinically
        relevant in AUC comparisons.
    critical_drop : float, default 0.10
        AUC loss from which the periphery carries a large part of the signal.
    n_boot : int, default 500
        Patient-cluster bootstrap replicates of the paired difference.
    seed : int, default 0
    """

    anatomy_layout: AnatomyLayout = "auto"
    anatomy_hidden_variants: tuple[str, ...] = ("center_masked", "border_only")
    periphery_hidden_variants: tuple[str, ...] = ("corners_masked",)
    warn_masked_auc: float = 0.55
    critical_masked_auc: float = 0.70
    warn_drop: float = 0.05
    critical_drop: float = 0.10
    n_boot: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.anatomy_layout not in get_args(AnatomyLayout):
            raise ValueError(
                f"MaskingTestConfig.anatomy_layout must be one of "
                f"{list(get_args(AnatomyLayout))}; got {self.anatomy_layout!r}"
            )
        if not 0.5 <= self.warn_masked_auc <= self.critical_masked_auc <= 1:
            raise ValueError(
                "masking_test needs 0.5 <= warn_masked_auc <= critical_masked_auc "
                f"<= 1; got {self.warn_masked_auc} and {self.critical_masked_auc}"
            )
        if not 0 < self.warn_drop <= self.critical_drop:
            raise ValueError(
                f"masking_test needs 0 < warn_drop <= critical_drop; got "
                f"{self.warn_drop} and {self.critical_drop}"
            )


def _variant_result(
    name: str,
    y: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    patients: np.ndarray,
    config: MaskingTestConfig,
) -> dict[str, Any]:
    auc_o = auc_estimate(y, p, patients, n_boot=config.n_boot, seed=config.seed)
    auc_m = auc_estimate(y, q, patients, n_boot=config.n_boot, seed=config.seed)
    f_o, f_m = weighted_macro_auc_fn(y, p), weighted_macro_auc_fn(y, q)
    clustered = len(np.unique(patients)) < len(patients)
    unit = patients if clustered else np.arange(len(y))
    boot = ClusterBootstrap(unit, config.n_boot, config.seed)
    ones = np.ones(len(y))
    d = percentile_interval(
        f_o(ones) - f_m(ones),
        [f_o(w) - f_m(w) for w in boot.weights()],
        "paired difference original - masked, "
        + (
            "patient-level percentile bootstrap over clusters"
            if clustered
            else "percentile bootstrap over rows"
        ),
    )
    retained = (
        (auc_m.estimate - 0.5) / (auc_o.estimate - 0.5)
        if np.isfinite(auc_o.estimate) and auc_o.estimate > 0.5
        else float("nan")
    )
    return {
        "variant": name,
        "auc": auc_m.to_dict(),
        "auc_original": auc_o.to_dict(),
        "difference": d.to_dict(),
        "retained_fraction": finite_or_none(retained, 4),
        "n": len(y),
    }


def masking_results(
    ctx: AuditContext, config: MaskingTestConfig
) -> dict[str, list[dict[str, Any]]]:
    """Per variant, on the out-of-fold rows and (separately) on ``folds == -1`` rows.

    Returns
    -------
    dict
        ``{"out_of_fold": [...], "held_out": [...]}``; entries ``variant``,
        ``auc``, ``auc_original``, ``difference`` (Estimate dicts),
        ``retained_fraction`` (``(masked - 0.5) / (original - 0.5)``), ``n``.
    """
    y = ctx.labels
    probs = np.asarray(ctx.get("pred_probs"), dtype=np.float64)
    masked = ctx.get("masked")
    patients = ctx.manifest["patient_key"].astype(str).to_numpy()
    folds = (
        np.asarray(ctx.get("folds")).astype(np.int64)
        if ctx.has("folds")
        else np.zeros(ctx.n, np.int64)
    )
    out: dict[str, list[dict[str, Any]]] = {"out_of_fold": [], "held_out": []}
    for part, rows in (("out_of_fold", folds >= 0), ("held_out", folds < 0)):
        if rows.sum() < 2 or len(np.unique(y[rows])) < 2:
            continue
        for name in sorted(masked):
            q = np.asarray(masked[name], dtype=np.float64)
            out[part].append(
                _variant_result(name, y[rows], probs[rows], q[rows], patients[rows], config)
            )
    return out


def resolve_anatomy_layout(manifest: pd.DataFrame, setting: str) -> tuple[str, str]:
    """The image layout the anatomy-hidden rule assumes, and how it was decided.

    Parameters
    ----------
    manifest : pandas.DataFrame
        The run's manifest (N rows); ``dicom_modality`` is read when present.
    setting : {'auto', 'centered', 'full_frame'}
        :attr:`MaskingTestConfig.anatomy_layout`.

    Returns
    -------
    layout : {'centered', 'full_frame', 'unknown'}
        A set value is returned as is. ``'auto'``: ``'centered'`` when every
        row's ``dicom_modality`` is in :data:`CENTERED_MODALITIES`,
        ``'full_frame'`` when every row's is outside it, ``'unknown'`` without
        the column (npz, PNG or external input), with rows lacking it, or when
        the rows mix both kinds.
    how : str
        One line for the evidence (``"auto: dicom_modality CR, DX on every row"``).
    """
    if setting != "auto":
        return setting, f"set: anatomy_layout = {setting!r}"
    if "dicom_modality" not in manifest.columns:
        return "unknown", "auto: no dicom_modality column (npz, PNG or external input)"
    col = manifest["dicom_modality"].astype("string").str.strip().str.upper()
    missing = int((col.isna() | (col == "")).sum())
    if missing:
        return "unknown", f"auto: dicom_modality missing on {missing} of {len(col)} rows"
    codes = sorted(set(col.astype(str)))
    centered = [c for c in codes if c in CENTERED_MODALITIES]
    listed = ", ".join(codes)
    if centered and len(centered) < len(codes):
        return "unknown", (
            f"auto: dicom_modality mixes radiograph-like and full-frame modalities ({listed})"
        )
    if centered:
        return "centered", f"auto: dicom_modality {listed} on every row"
    known = [c for c in codes if c in FULL_FRAME_MODALITIES]
    other = "" if len(known) == len(codes) else "; codes not known to be radiograph-like"
    return "full_frame", f"auto: dicom_modality {listed} on every row{other}"


def _txt(e: dict[str, Any]) -> str:
    if e["estimate"] is None:
        return "n/a"
    if e["ci_low"] is None:
        return f"{e['estimate']:.2f}"
    return f"{e['estimate']:.2f} (95% CI {e['ci_low']:.2f} to {e['ci_high']:.2f})"


def _anatomy_grade(v: dict[str, Any], config: MaskingTestConfig) -> str:
    """The anatomy-hidden rule's grade of variant ``v`` (as if the layout were centred)."""
    low = v["auc"]["ci_low"]
    if low is not None and low >= config.critical_masked_auc:
        return "critical"
    if low is not None and low >= config.warn_masked_auc:
        return "warning"
    return "pass"


def _severity(v: dict[str, Any], config: MaskingTestConfig, layout: str) -> str:
    if v["variant"] in config.anatomy_hidden_variants and layout == "centered":
        sev = _anatomy_grade(v, config)
        if sev != "pass":
            return sev
    if v["variant"] in config.periphery_hidden_variants:
        d = v["difference"]
        if d["ci_low"] is not None and d["ci_low"] > 0:
            if d["estimate"] >= config.critical_drop:
                return "critical"
            if d["estimate"] >= config.warn_drop:
                return "warning"
    return "pass"


def _method(config: MaskingTestConfig, layout: str, how: str) -> dict[str, str]:
    graded = (
        "graded (radiograph-like layout)"
        if layout == "centered"
        else "reported, not graded: at most an info finding (the masked images may still show "
        "anatomy)"
    )
    return {
        "auc": "out-of-fold AUC (binary, or macro one-vs-rest); DeLong, or patient-level "
        "percentile bootstrap when patients repeat",
        "difference": f"paired AUC difference original - masked, patient-cluster percentile "
        f"bootstrap ({config.n_boot} replicates)",
        "masks": "audit.masking: center_masked (central 60% box), border_only (12% frame kept), "
        "corners_masked (15% corner squares); hidden pixels = image mean",
        "layout": f"{layout} ({how}); anatomy-hidden rule {graded}",
        "rule": f"anatomy hidden ({', '.join(config.anatomy_hidden_variants)}), centered layout "
        f"only: warning when the masked AUC's lower bound >= {config.warn_masked_auc:.2f}, "
        f"critical >= {config.critical_masked_auc:.2f}; periphery hidden "
        f"({', '.join(config.periphery_hidden_variants)}), every layout: warning when the drop "
        f">= {config.warn_drop:.2f} with its interval above 0, critical >= "
        f"{config.critical_drop:.2f}",
    }


def _summary(variants: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{v['variant']} AUC {_txt(v['auc'])} vs {_txt(v['auc_original'])}" for v in variants
    )


def check_masking_test(ctx: AuditContext, config: MaskingTestConfig) -> list[Finding]:
    """Out-of-fold AUC on original vs masked images (see the module docstring).

    Parameters
    ----------
    ctx : AuditContext
        Needs ``pred_probs`` ``(N, K)`` and ``masked`` (variant -> ``(N, K)``);
        uses ``folds`` to separate held-out rows and the manifest's
        ``dicom_modality`` to resolve ``anatomy_layout = 'auto'``.
    config : MaskingTestConfig

    Returns
    -------
    list of Finding
        One finding per variant that raises a warning or worse; with a layout
        other than ``centered``, one ``info`` finding when an anatomy-hidden
        variant would have been graded; else one pass finding. Each carries
        ``evidence["variants"]`` (every variant of the out-of-fold rows),
        ``evidence["held_out_variants"]``, ``evidence["anatomy_layout"]``
        (``{setting, layout, resolved_from}``) and the method (with the
        resolved layout in ``evidence["method"]["layout"]``).
    """
    res = masking_results(ctx, config)
    variants = res["out_of_fold"]
    layout, how = resolve_anatomy_layout(ctx.manifest, config.anatomy_layout)
    evidence = {
        "variants": variants,
        "held_out_variants": res["held_out"],
        "anatomy_layout": {
            "setting": config.anatomy_layout,
            "layout": layout,
            "resolved_from": how,
        },
        "method": _method(config, layout, how),
    }
    findings = []
    for v in variants:
        sev = _severity(v, config, layout)
        if sev == "pass":
            continue
        what = DESCRIPTION.get(v["variant"], f"the '{v['variant']}' mask applied")
        high = v["variant"] in config.anatomy_hidden_variants and layout == "centered"
        findings.append(
            Finding(
                check=NAME,
                severity=sev,  # type: ignore[arg-type]
                title=(TITLE_HIGH if high else TITLE_DROP).format(
                    variant=v["variant"], auc=_txt(v["auc"])
                ),
                message=(MSG_HIGH if high else MSG_DROP).format(
                    what=what,
                    auc=_txt(v["auc"]),
                    orig=_txt(v["auc_original"]),
                    diff=_txt(v["difference"]),
                ),
                evidence={**evidence, "variant": v["variant"]},
                recommendation=REC,
                references=_REFS,
            )
        )
    ungraded = [
        v
        for v in variants
        if layout != "centered"
        and v["variant"] in config.anatomy_hidden_variants
        and _anatomy_grade(v, config) != "pass"
    ]
    if ungraded:
        top = max(ungraded, key=lambda v: v["auc"]["ci_low"])
        findings.append(
            Finding(
                check=NAME,
                severity="info",
                title=TITLE_INCONCLUSIVE.format(
                    layout=layout, variants=", ".join(v["variant"] for v in ungraded)
                ),
                message=MSG_INCONCLUSIVE.format(
                    what=DESCRIPTION.get(top["variant"], f"the '{top['variant']}' mask applied"),
                    auc=_txt(top["auc"]),
                    orig=_txt(top["auc_original"]),
                    why=WHY_LAYOUT[layout].format(how=how),
                ),
                evidence=evidence,
                references=_REFS,
            )
        )
    if not findings:
        if not variants:
            msg = (
                "No out-of-fold rows with both classes to compare on; held-out rows: "
                f"{len(res['held_out'])} variant(s) scored."
            )
        elif layout == "centered":
            msg = MSG_PASS.format(summary=_summary(variants))
        else:
            msg = MSG_PASS_CORNERS.format(
                summary=_summary(variants), why=WHY_LAYOUT[layout].format(how=how)
            )
        findings.append(
            Finding(
                check=NAME,
                severity="pass",
                title=(TITLE_PASS if layout == "centered" else TITLE_PASS_CORNERS).format(
                    n=len(variants)
                ),
                message=msg,
                evidence=evidence,
                references=_REFS,
            )
        )
    return findings


def masking_table(ctx: AuditContext, config: MaskingTestConfig) -> pd.DataFrame:
    """Per-sample table: the probability of the given label on the original and each variant.

    Returns
    -------
    pandas.DataFrame
        N rows: ``sample_id``, ``prob_given_label`` and
        ``prob_given_label_<variant>`` per variant.
    """
    y = ctx.labels
    idx = np.arange(ctx.n)
    probs = np.asarray(ctx.get("pred_probs"))
    table: dict[str, Any] = {"sample_id": ctx.sample_ids, "prob_given_label": probs[idx, y]}
    for name, q in sorted(ctx.get("masked").items()):
        table[f"prob_given_label_{name}"] = np.asarray(q)[idx, y]
    return pd.DataFrame(table)


SPEC = CheckSpec(
    name=NAME,
    func=check_masking_test,
    config_cls=MaskingTestConfig,
    requires=("pred_probs", "masked"),
    table=masking_table,
    model_based=True,
    description="OOF AUC on original vs masked images (centre hidden, border only, corners "
    "hidden) with a paired patient-bootstrap difference",
)
