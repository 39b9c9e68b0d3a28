"""Section 3, the model card (after Mitchell et al., FAT* 2019, 'Model cards for model reporting').

Architecture and training settings from ``run.json['train']``; out-of-fold metrics
with their intervals as training recorded them; the operating point from
:mod:`audit.operating_point` (the one threshold of medaudit); PPV and NPV at the
training prevalence and at the deployment prevalence the run states; the ROC curve
and the reliability diagram of the out-of-fold probabilities; and, for the model
checks that other engineers' checks provide (subgroups, calibration, prevalence,
overfitting, masking), their findings when they ran or "not evaluated by this run".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

from audit.masking import MASKED_VARIANTS
from audit.metrics import accuracy_with_ci, auc_with_ci
from audit.operating_point import choose_operating_points, predictive_values
from audit.stats import Estimate, finite_or_none, wilson_ci
from reports._rundata import RunData
from reports.evidence import iter_records
from reports.model import FigureSpec, Gallery, ModelCard, Table, Thumb
from reports.options import ReportOptions

__all__ = ["MODEL_CHECKS", "NOT_EVALUATED", "build_model_card", "ppv_npv_cells"]

NOT_EVALUATED = "not evaluated by this run"
#: Checks whose findings belong to the model card, with what they evaluate.
MODEL_CHECKS: tuple[tuple[str, str], ...] = (
    ("subgroup_performance", "performance per subgroup (site, scanner, sex, age band, view)"),
    ("calibration", "calibration: are the probabilities right, overall and per group"),
    ("prevalence_shift", "PPV and NPV at the deployment prevalence; prevalence estimation"),
    ("overfitting", "memorisation (in-sample vs out-of-fold) and learning curves"),
    ("masking_test", "performance with the anatomy masked (does the model look elsewhere?)"),
    ("hidden_stratification", "hidden subsets of a class where the model fails"),
)
#: Points kept on the ROC curve of the report (the curve is thinned evenly beyond).
MAX_ROC_POINTS = 200
_TRAINING_KEYS = (
    "folds",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_epochs",
    "class_weighting",
    "mixup",
    "flips",
    "rotate_degrees",
    "scale_range",
    "translate_fraction",
    "brightness",
    "contrast",
    "augment_probability",
    "inner_val_fraction",
    "patience",
    "ema_epochs",
    "refit",
    "models_per_fold",
    "keep_selected",
    "holdout_split",
    "seed",
)


def _r(x: Any, digits: int = 4) -> float | None:
    return finite_or_none(x, digits)


def _est(e: Estimate) -> dict[str, Any]:
    return e.to_dict()


def _evaluated_rows(data: RunData) -> np.ndarray | None:
    """Rows the model was evaluated on out of sample: folds >= 0, or all for external runs."""
    folds = data.array("oof/folds")
    if folds is None:
        return None
    folds = np.asarray(folds)
    if (folds >= 0).any():
        return np.flatnonzero(folds >= 0)
    return np.arange(len(folds))  # external predictions, assumed out of sample


def _architecture(train: Mapping[str, Any], data: RunData) -> Table:
    cfg = train.get("config") or {}
    setup = train.get("setup") or {}
    weights = cfg.get("pretrained_weights")
    shape = (data.info.get("ingest") or {}).get("image_shape")
    rows = [
        ["architecture", f"{cfg.get('model', '?')} (timm)"],
        ["mode", str(train.get("mode", cfg.get("mode", "")))],
        [
            "initial weights",
            PurePath(str(weights)).name
            if weights
            else "random initialisation (no pretrained weights)",
        ],
        [
            "input",
            f"{cfg.get('image_size') or (shape[-1] if shape else '?')} px, "
            f"{shape[0] if shape else '?'} channel(s)",
        ],
        ["classes", ", ".join(data.classes)],
        [
            "ensemble",
            f"{cfg.get('folds', '?')} fold models; "
            f"{cfg.get('models_per_fold', 1)} model(s) per fold",
        ],
        ["device", f"{setup.get('device', '?')}, precision {setup.get('precision', '?')}"],
    ]
    return Table("Architecture", ["", "value"], rows)


def _training(train: Mapping[str, Any]) -> Table:
    cfg = train.get("config") or {}
    rows = [
        [k, cfg[k] if not isinstance(cfg[k], (list, dict)) else str(cfg[k])]
        for k in _TRAINING_KEYS
        if k in cfg
    ]
    return Table(
        "Training settings",
        ["setting", "value"],
        rows,
        note="folds are grouped by patient; the epoch count is chosen on an inner split "
        "of each fold's training rows, never on its out-of-fold rows",
    )


def _metrics(train: Mapping[str, Any], data: RunData, rows: np.ndarray | None) -> Table:
    out = []
    n_cv = train.get("n_cv_rows")
    if train.get("oof_auc"):
        out.append(
            ["ROC AUC, out-of-fold", train["oof_auc"], n_cv, train.get("auc_definition", "")]
        )
    if train.get("oof_acc"):
        out.append(["accuracy, out-of-fold (argmax)", train["oof_acc"], n_cv, ""])
    hold = train.get("holdout")
    if hold:
        n_hold = train.get("n_holdout_rows")
        out.append(
            [
                f"ROC AUC, held-out split {hold.get('split')!r}",
                hold.get("auc"),
                n_hold,
                hold.get("scored_by", ""),
            ]
        )
        out.append([f"accuracy, held-out split {hold.get('split')!r}", hold.get("acc"), n_hold, ""])
    if not out and rows is not None:  # external predictions: computed here, same functions
        probs = data.array("oof/pred_probs")
        if probs is not None:
            y = data.manifest["label"].to_numpy()[rows]
            p = np.asarray(probs, dtype=np.float64)[rows]
            groups = data.manifest["patient_key"].to_numpy()[rows]
            out.append(
                [
                    "ROC AUC (external predictions)",
                    _est(auc_with_ci(y, p, groups=groups)),
                    len(rows),
                    "computed by the report (audit.metrics.auc_with_ci)",
                ]
            )
            out.append(
                [
                    "accuracy (external predictions, argmax)",
                    _est(accuracy_with_ci(y, p)),
                    len(rows),
                    "",
                ]
            )
    return Table(
        "Performance with 95% confidence intervals",
        ["metric", "estimate [95% CI]", "n", "note"],
        out,
        note="out-of-fold: every image scored by the fold model that never trained on its patient",
    )


def _folds(train: Mapping[str, Any]) -> Table:
    rows = [
        [
            f.get("fold"),
            f.get("n_train"),
            f.get("n_oof"),
            _r(f.get("auc")),
            _r(f.get("in_sample_auc")),
            _r(f.get("inner_val_auc")),
            f.get("best_epoch"),
            f.get("epochs_run"),
        ]
        for f in train.get("folds") or []
    ]
    return Table(
        "Folds",
        [
            "fold",
            "training rows",
            "out-of-fold rows",
            "AUC out-of-fold",
            "AUC in-sample",
            "AUC inner validation",
            "epochs chosen",
            "epochs run",
        ],
        rows,
        note="a large gap between in-sample and out-of-fold AUC means memorisation",
    )


def _masked(train: Mapping[str, Any]) -> Table | None:
    masked = train.get("masked_oof_auc") or {}
    if not masked:
        return None
    base = (train.get("oof_auc") or {}).get("estimate")
    rows = [
        [v, _r(a), _r(a - base) if a is not None and base is not None else None]
        for v, a in masked.items()
    ]
    return Table(
        "Out-of-fold AUC on masked images",
        ["variant", "AUC", "change vs unmasked"],
        rows,
        note="center_masked hides the central 60% box, border_only keeps a 12% "
        "frame, corners_masked hides 15% corner squares (audit.masking); on radiograph-like "
        "images a model that keeps its AUC without the anatomy reads something else "
        "(the masking_test finding states the image layout it assumed)",
    )


def _deployment_prevalence(data: RunData, positive: str) -> tuple[float | None, str]:
    def pick(v: Any) -> float | None:
        if isinstance(v, Mapping):
            v = v.get(positive, v.get("estimate"))
        if isinstance(v, (list, tuple)):
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if 0 < f < 1 else None

    info = data.info
    for where, value in (
        ("run.json deployment", (info.get("deployment") or {}).get("prevalence")),
        ("run.json deployment_prevalence", info.get("deployment_prevalence")),
        ("run.json audit.deployment_prevalence", data.audit.get("deployment_prevalence")),
        (
            "prevalence_shift settings",
            ((data.audit.get("config") or {}).get("prevalence_shift") or {}).get(
                "deployment_prevalence"
            ),
        ),
    ):
        v = pick(value)
        if v is not None:
            return v, where
    for _, f in data.findings_of("prevalence_shift"):
        v = pick(f.evidence.get("deployment_prevalence"))
        if v is not None:
            return v, "prevalence_shift finding"
    return None, "not stated in this run (audit with a deployment prevalence to add it)"


def ppv_npv_cells(sens: Mapping[str, Any], spec: Mapping[str, Any], p: float) -> list[Any]:
    """PPV and NPV (intervals), false alarms and missed cases per 1,000, at prevalence ``p``.

    ``sens`` and ``spec`` are interval dicts; PPV and NPV come from
    :func:`audit.operating_point.predictive_values` applied to the estimates and to the
    ends of the intervals (both are monotone in sensitivity and specificity).
    Used by the model card and by the dashboard's prevalence controls.

    Returns
    -------
    list
        ``[ppv, npv, false_alarms_per_1000, missed_per_1000]``.
    """

    def val(d: Mapping[str, Any], k: str) -> float:
        v = d.get(k)
        return float("nan") if v is None else float(v)

    ppv, npv = predictive_values(val(sens, "estimate"), val(spec, "estimate"), p)
    ppv_lo, npv_lo = predictive_values(val(sens, "ci_low"), val(spec, "ci_low"), p)
    ppv_hi, npv_hi = predictive_values(val(sens, "ci_high"), val(spec, "ci_high"), p)
    method = (
        "Bayes' rule at the stated prevalence applied to the ends of the sensitivity and "
        "specificity intervals"
    )
    fa = (1 - val(spec, "estimate")) * (1 - p) * 1000
    missed = (1 - val(sens, "estimate")) * p * 1000
    return [
        Estimate(ppv, ppv_lo, ppv_hi, 0.95, method).to_dict(),
        Estimate(npv, npv_lo, npv_hi, 0.95, method).to_dict(),
        _r(fa, 1),
        _r(missed, 1),
    ]


def _roc(y_pos: np.ndarray, score: np.ndarray, op: Mapping[str, Any]) -> dict[str, Any]:
    order = np.argsort(-score, kind="stable")
    s, pos = score[order], y_pos[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(pos)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(pos.sum(), 1)]
    fpr = np.r_[0.0, fps / max((~pos).sum(), 1)]
    if len(fpr) > MAX_ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, MAX_ROC_POINTS).astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    sens = (op.get("sensitivity") or {}).get("estimate")
    spec = (op.get("specificity") or {}).get("estimate")
    return {
        "fpr": [round(float(v), 4) for v in fpr],
        "tpr": [round(float(v), 4) for v in tpr],
        "operating_point": None
        if sens is None or spec is None
        else {"fpr": round(1 - spec, 4), "tpr": round(sens, 4), "threshold": op.get("threshold")},
    }


_PRED_KEYS = (
    "mean_predicted",
    "mean_confidence",
    "confidence",
    "predicted",
    "mean_prob",
    "mean_probability",
    "prob_pred",
)
_OBS_KEYS = (
    "observed",
    "fraction_positive",
    "observed_frequency",
    "frac_pos",
    "accuracy",
    "prob_true",
    "observed_rate",
)


def _reliability_from_findings(data: RunData) -> dict[str, Any] | None:
    for fid, f in data.findings_of("calibration"):
        for path, records in iter_records(f.evidence):
            keys = set(records[0])
            pk = next((k for k in _PRED_KEYS if k in keys), None)
            ok = next((k for k in _OBS_KEYS if k in keys), None)
            if pk is None or ok is None:
                continue
            bins = []
            for r in records:
                obs, n = r.get(ok), r.get("n", r.get("count"))
                if isinstance(obs, Mapping):
                    est = obs
                elif isinstance(obs, (int, float)) and isinstance(n, int) and n > 0:
                    est = wilson_ci(round(float(obs) * n), n).to_dict()  # a rate of n rows
                else:
                    est = {
                        "estimate": obs,
                        "ci_low": None,
                        "ci_high": None,
                        "level": 0.95,
                        "method": "no interval reported",
                    }
                bins.append({"mean_predicted": _r(r.get(pk)), "observed": est, "n": n})
            return {
                "source": f"calibration finding {fid} (evidence '{path}')",
                "bins": bins,
                "what": "as reported by the calibration check",
            }
    return None


def _reliability(y: np.ndarray, p: np.ndarray, bins: int, positive: int | None) -> dict[str, Any]:
    if positive is not None:
        conf, hit = p[:, positive], (y == positive)
        what = f"probability of class {positive} against its observed frequency"
    else:
        conf, hit = p.max(axis=1), (p.argmax(axis=1) == y)
        what = "top-class probability against accuracy"
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=False), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        if n == 0:
            continue
        w = wilson_ci(int(hit[sel].sum()), n)
        out.append(
            {
                "bin_low": round(float(edges[b]), 4),
                "bin_high": round(float(edges[b + 1]), 4),
                "mean_predicted": _r(conf[sel].mean()),
                "observed": w.to_dict(),
                "n": n,
            }
        )
    return {
        "source": f"computed by the report from oof/pred_probs.npy: {bins} equal-width bins, "
        "Wilson 95% intervals",
        "bins": out,
        "what": what,
    }


def _learning_curves(data: RunData) -> dict[str, Any] | None:
    if not data.run.has("train/history.json"):
        return None
    hist = data.run.read_json("train/history.json")
    folds = []
    for f in hist.get("folds") or []:
        ep = f.get("epochs") or []
        folds.append(
            {
                "fold": f.get("fold"),
                "epoch": [e.get("epoch") for e in ep],
                "train_loss": [_r(e.get("train_loss")) for e in ep],
                "inner_val_loss": [_r(e.get("inner_val_loss")) for e in ep],
                "inner_val_auc": [_r(e.get("inner_val_auc")) for e in ep],
                "best_epoch": f.get("best_epoch"),
            }
        )
    return {"folds": folds} if folds else None


def _evaluated(data: RunData) -> list[dict[str, Any]]:
    audit = data.audit
    ran = set(audit.get("checks_run") or [])
    skipped = {s["check"]: s.get("reason", "") for s in audit.get("skipped") or []}
    failed = {e["check"]: e.get("error", "") for e in audit.get("errors") or []}
    out = []
    for check, what in MODEL_CHECKS:
        ids = [i for i, _ in data.findings_of(check)]
        if check in failed:
            status = f"failed: {failed[check]}"
        elif check in ran:
            status = "evaluated"
        elif check in skipped:
            status = f"{NOT_EVALUATED} (skipped: {skipped[check]})"
        else:
            status = NOT_EVALUATED
        out.append({"check": check, "what": what, "status": status, "finding_ids": ids})
    return out


def _masked_examples(data: RunData, rows: np.ndarray, options: ReportOptions) -> list[Gallery]:
    """One image per class next to the masked variants the model was re-scored on."""
    variants = [v for v in MASKED_VARIANTS if v in set(data.run.masked_variants())]
    if not variants or not data.run.has("images") or options.max_thumbnails == 0:
        return []
    labels = data.manifest["label"].to_numpy()
    ids = data.manifest["sample_id"].astype(str).to_numpy()
    groups, captions = [], []
    for c, name in enumerate(data.classes):
        hits = rows[labels[rows] == c]
        if hits.size == 0 or (len(groups) + 1) * (1 + len(variants)) > options.max_thumbnails:
            continue
        r = int(hits[0])
        groups.append(
            [Thumb(ids[r], r, "original"), *(Thumb(ids[r], r, v, variant=v) for v in variants)]
        )
        captions.append(f"{ids[r]} ({name}): the image and what each masked variant hides")
    return (
        [
            Gallery(
                "masked",
                "Masked variants the out-of-fold rows were re-scored on",
                groups,
                captions,
                len(groups),
            )
        ]
        if groups
        else []
    )


def build_model_card(data: RunData, options: ReportOptions) -> ModelCard:
    """Build section 3 from a loaded run (pure; the bootstrap is seeded by ``options.seed``)."""
    info = data.info
    train = info.get("train") or {}
    kind = "trained" if train else ("external" if info.get("external") else "none")
    tables: list[Table] = []
    figures: list[FigureSpec] = []
    rows = _evaluated_rows(data)
    probs = data.array("oof/pred_probs")
    if kind == "none" or probs is None or rows is None:
        return ModelCard(
            kind="none",
            note="No model predictions in this run (ingested only): "
            "train a model or import predictions to evaluate one.",
            tables=[],
            operating_points=[],
            prevalences={},
            evaluated=_evaluated(data),
        )
    note = (
        "Trained by medaudit with patient-grouped cross-validation; every metric below is "
        "out-of-fold."
        if kind == "trained"
        else "Predictions of a model trained elsewhere, assumed never to have seen these images; "
        "its architecture and training are not known to medaudit."
    )
    if kind == "trained":
        tables += [_architecture(train, data), _training(train)]
    tables.append(_metrics(train, data, rows))
    if kind == "trained":
        tables.append(_folds(train))
        masked = _masked(train)
        if masked is not None:
            tables.append(masked)
    y_all = data.manifest["label"].to_numpy()
    y = y_all[rows]
    p = np.asarray(probs, dtype=np.float64)[rows]
    groups = data.manifest["patient_key"].to_numpy()[rows]
    ops = choose_operating_points(y, p, groups=groups, seed=options.seed)
    op_dicts = []
    prevalences: dict[str, Any] = {}
    pv_rows: list[list[Any]] = []
    op_rows: list[list[Any]] = []
    for c, op in ops.items():
        d = op.to_dict()
        d["class_name"] = data.classes[c]
        op_dicts.append(d)
        op_rows.append(
            [
                data.classes[c],
                d["threshold"],
                d["method"],
                d["sensitivity"],
                d["specificity"],
                d["n_positive"],
                d["n_negative"],
            ]
        )
        train_prev = float((y == c).mean())
        dep, where = _deployment_prevalence(data, data.classes[c])
        prevalences[data.classes[c]] = {
            "training": _r(train_prev),
            "training_source": f"share of the class among the {len(y)} evaluated images",
            "deployment": dep,
            "deployment_source": where,
        }
        pv_rows.append(
            [
                data.classes[c],
                "training",
                _r(train_prev),
                *ppv_npv_cells(d["sensitivity"], d["specificity"], train_prev),
            ]
        )
        if dep is not None:
            pv_rows.append(
                [
                    data.classes[c],
                    "deployment",
                    _r(dep),
                    *ppv_npv_cells(d["sensitivity"], d["specificity"], dep),
                ]
            )
        else:
            pv_rows.append([data.classes[c], "deployment", "not stated", None, None, None, None])
    tables.append(
        Table(
            "Operating point",
            [
                "positive class",
                "threshold",
                "chosen by",
                "sensitivity [95% CI]",
                "specificity [95% CI]",
                "positives",
                "negatives",
            ],
            op_rows,
            note="one threshold per class (one-vs-rest), chosen once on the out-of-fold probabilities "
            "(audit.operating_point); intervals by patient-cluster bootstrap when patients have "
            "several images, else Wilson",
        )
    )
    tables.append(
        Table(
            "Predictive values at the stated prevalences",
            [
                "positive class",
                "prevalence",
                "value",
                "PPV [95% CI]",
                "NPV [95% CI]",
                "false alarms per 1,000",
                "missed per 1,000",
            ],
            pv_rows,
            note="PPV and NPV depend on prevalence: each is stated at the prevalence it was "
            "computed for; false alarms and missed cases per 1,000 people screened at that "
            "prevalence",
        )
    )
    if ops:
        c0 = next(iter(ops))
        figures.append(
            FigureSpec(
                id="fig-roc",
                kind="roc",
                title=f"ROC curve ({data.classes[c0]} vs rest)",
                caption="Out-of-fold ROC curve; the dot is the operating point.",
                data={"positive_class": data.classes[c0], **_roc(y == c0, p[:, c0], op_dicts[0])},
            )
        )
    rel = _reliability_from_findings(data) or _reliability(
        y, p, options.reliability_bins, 1 if p.shape[1] == 2 else None
    )
    figures.append(
        FigureSpec(
            id="fig-reliability",
            kind="reliability",
            title="Reliability diagram",
            caption=rel["source"],
            data=rel,
        )
    )
    curves = _learning_curves(data) if kind == "trained" else None
    if curves:
        figures.append(
            FigureSpec(
                id="fig-learning",
                kind="learning_curves",
                title="Learning curves per fold",
                caption="Training loss and inner-validation AUC per epoch; the marker is the epoch "
                "chosen.",
                data=curves,
            )
        )
    galleries = _masked_examples(data, rows, options) if kind == "trained" else []
    return ModelCard(
        kind=kind,
        note=note,
        tables=tables,
        operating_points=op_dicts,
        prevalences=prevalences,
        evaluated=_evaluated(data),
        figures=figures,
        galleries=galleries,
    )
