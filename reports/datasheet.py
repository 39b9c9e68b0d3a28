"""Section 2, the datasheet of the dataset (after Gebru et al., CACM 2021, 'Datasheets for datasets').

Sources, counts per class / split / site / scanner / sex / view / age band and
acquisition field, images per patient, what was refused at ingestion and why, and how
images were preprocessed and identifiers pseudonymised. Only pseudonymised keys and
file names relative to the input folder appear; no absolute path, no identifier.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from audit._schemas import annotator_columns
from reports._rundata import RunData
from reports.model import Datasheet, FigureSpec, Table

__all__ = ["build_datasheet"]

#: Columns never tabulated: identifiers, keys, labels and free paths.
_NOT_TABULATED = {"sample_id", "label", "label_name", "patient_key", "study_key", "path", "age"}
#: Columns tabulated first, in this order (others follow by name).
_FIRST = ("split", "site", "scanner", "sex", "view", "age_band")
#: A column with more distinct values than this is not tabulated (it is not a category).
MAX_LEVELS = 20
#: Quarantine reasons listed with up to this many example sources each.
MAX_EXAMPLES = 3
DEFAULT_AGE_BANDS = (0, 18, 40, 65, 130)
MISSING = "(missing)"


def _age_bands(data: RunData) -> tuple[float, ...]:
    cfg = (data.audit.get("config") or {}).get("class_balance_and_size") or {}
    return tuple(cfg.get("age_bands") or DEFAULT_AGE_BANDS)


def _categories(data: RunData) -> dict[str, pd.Series]:
    m = data.manifest
    out: dict[str, pd.Series] = {}
    if "age" in m.columns and m["age"].notna().any():
        edges = list(_age_bands(data))
        labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
        out["age_band"] = pd.cut(pd.to_numeric(m["age"], errors="coerce"), edges, right=False,
                                 labels=labels).astype("string")
    skip = _NOT_TABULATED | set(annotator_columns(m.columns))
    for col in m.columns:
        if col in skip or str(col).startswith("_"):
            continue
        values = m[col].astype("string")
        n_levels = values.nunique(dropna=True)
        if n_levels == 0 or n_levels > MAX_LEVELS:
            continue
        if n_levels == 1 and col not in _FIRST:
            continue  # a constant acquisition field says nothing per class
        out[str(col)] = values
    first = [c for c in _FIRST if c in out]
    rest = sorted(c for c in out if c not in _FIRST)
    return {c: out[c] for c in first + rest}


def _count_table(name: str, values: pd.Series, labels: pd.Series, classes: list[str],
                 levels: list[str] | None = None) -> Table:
    values = values.fillna(MISSING)
    cross = pd.crosstab(values, labels).reindex(columns=classes, fill_value=0)
    total = cross.sum(axis=1)
    if levels is not None:  # a natural order (age bands), missing last
        order = [lv for lv in [*levels, MISSING] if lv in cross.index]
    else:
        order = sorted(cross.index, key=lambda lv: (-int(total[lv]), str(lv)))
    n = int(total.sum())
    rows = [[str(lv), *(int(cross.at[lv, c]) for c in classes), int(total[lv]),
             round(int(total[lv]) / n, 4)] for lv in order]
    return Table(f"Images by {name}", [name, *classes, "total", "share"], rows)


def _images_per_patient(m: pd.DataFrame) -> Table:
    per = m.groupby("patient_key", sort=False).size()
    bins = [(1, 1, "1"), (2, 2, "2"), (3, 5, "3-5"), (6, 10, "6-10"), (11, None, "more than 10")]
    rows = []
    for lo, hi, label in bins:
        sel = (per >= lo) if hi is None else ((per >= lo) & (per <= hi))
        if sel.any():
            rows.append([label, int(sel.sum()), int(per[sel].sum())])
    return Table("Images per patient", ["images per patient", "patients", "images"], rows,
                 note=f"{len(per)} patients; median {float(per.median()):g}, at most {int(per.max())} "
                 "images per patient (patients are pseudonymised keys)")


def _class_table(data: RunData) -> Table:
    m = data.manifest
    rows = []
    for i, c in enumerate(data.classes):
        sel = m["label"] == i
        rows.append([c, int(sel.sum()), int(m.loc[sel, "patient_key"].nunique()),
                     round(float(sel.mean()), 4)])
    return Table("Classes", ["class", "images", "patients", "share of images"], rows,
                 note="labels as given (the reference standard of this dataset)")


def _age_table(m: pd.DataFrame, classes: list[str]) -> Table | None:
    if "age" not in m.columns:
        return None
    age = pd.to_numeric(m["age"], errors="coerce")
    if age.notna().sum() == 0:
        return None
    rows = []
    groups = [("all", np.ones(len(m), dtype=bool))] + [
        (c, (m["label"] == i).to_numpy()) for i, c in enumerate(classes)]
    for name, sel in groups:
        a = age[sel].dropna()
        if len(a) == 0:
            rows.append([name, 0, None, None, None, None, None, int((~age[sel].notna()).sum())])
            continue
        q1, med, q3 = (float(x) for x in np.percentile(a, [25, 50, 75]))
        rows.append([name, len(a), round(med, 1), round(q1, 1), round(q3, 1), round(float(a.min()), 1),
                     round(float(a.max()), 1), int(age[sel].isna().sum())])
    return Table("Age", ["group", "n", "median", "25th pct", "75th pct", "min", "max", "missing"],
                 rows)


_LONG_ASIDE = re.compile(r"\([^()]{20,}\)")
_TAG_OR_NUMBER = re.compile(r"(\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\))|\d+")


def _reason_head(reason: str) -> str:
    """The first clause of a refusal reason, without long asides."""
    return " ".join(_LONG_ASIDE.sub("", reason.split(";")[0]).split())[:200]


def _reason_kind(reason: str) -> str:
    """Grouping key of a reason: its head with numbers (not DICOM tags) blanked."""
    return _TAG_OR_NUMBER.sub(lambda m: m.group(1) or "#", _reason_head(reason))


def _quarantine(data: RunData) -> Table:
    q = data.quarantine
    if q.empty:
        return Table("Refused inputs", ["reason", "inputs", "examples"], [],
                     note="no input was refused")
    reasons = q["reason"].astype(str)
    kinds = reasons.map(_reason_kind)
    rows = []
    for _, idx in sorted(kinds.groupby(kinds).groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        examples = [str(s) for s in q.loc[idx, "source"].head(MAX_EXAMPLES)]
        rows.append([_reason_head(reasons[idx[0]]), len(idx), ", ".join(examples)])
    return Table("Refused inputs", ["reason (first of its kind)", "inputs", "examples"], rows,
                 note=f"{len(q)} inputs refused in all; every one with its full reason in "
                 "quarantine.csv of the run directory")


def _source(info: dict[str, Any]) -> dict[str, Any]:
    ingest = info.get("ingest") or {}
    external = info.get("external") or {}
    if ingest:
        src = dict(ingest.get("source") or {})
        out: dict[str, Any] = {"kind": src.get("kind", "unknown")}
        for key in ("path", "labels"):  # file names only: folders may name people or places
            if src.get(key):
                out[key] = PurePath(str(src[key])).name
        if src.get("key"):
            out["joined_on"] = src["key"]
        files = (ingest.get("input_files") or {}).get("files") or {}
        out["n_input_files"] = len(files) if files else None
        return out
    if external:
        inputs = external.get("inputs") or {}
        return {"kind": "external predictions",
                "files": {k: PurePath(str(v.get("path", ""))).name for k, v in inputs.items()},
                "n_input_files": len(inputs)}
    return {"kind": "unknown"}


def _preprocessing(data: RunData) -> Table:
    info = data.info
    ingest = info.get("ingest") or {}
    opts = ingest.get("options") or {}
    rows: list[list[Any]] = []
    if ingest:
        shape = ingest.get("image_shape")
        rows += [
            ["image cache", f"{shape[0]} channel(s) x {shape[1]} x {shape[2]} px, uint8" if shape
             else "unknown"],
            ["resizing", f"bilinear to {opts.get('image_size')} x {opts.get('image_size')} px"],
            ["channels", str(opts.get("channels", ""))],
            ["multi-frame DICOM", f"{opts.get('frame_policy', '')} frame"],
        ]
        if "dicom_windowing" in data.manifest.columns:
            counts = data.manifest["dicom_windowing"].fillna(MISSING).value_counts()
            rows.append(["DICOM intensity mapping", ", ".join(
                f"{k}: {int(v)}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))])
        rows.append(["identifiers", "patient, study and site identifiers replaced by keyed "
                     f"HMAC-SHA256 pseudonyms (key fingerprint {ingest.get('key_fingerprint', '?')}); "
                     "columns that look like direct identifiers dropped"])
        rows.append(["cache", "reused an earlier decode (cache hit)" if ingest.get("cache_hit")
                     else "decoded from the input files"])
    elif info.get("external"):
        ext = info["external"]
        rows += [["predictions", "probabilities of a model trained elsewhere, joined on sample_id"],
                 ["identifiers", "patient, study and site identifiers replaced by keyed pseudonyms "
                  f"(key fingerprint {ext.get('key_fingerprint', '?')})"]]
    return Table("Preprocessing", ["step", "what was done"], rows)


def build_datasheet(data: RunData) -> Datasheet:
    """Build section 2 from a loaded run (pure)."""
    m = data.manifest
    info = data.info
    labels = m["label"].map(dict(enumerate(data.classes)))
    tables = [_class_table(data), _images_per_patient(m)]
    edges = list(_age_bands(data))
    bands = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
    for name, values in _categories(data).items():
        tables.append(_count_table(name, values, labels, data.classes,
                                   bands if name == "age_band" else None))
    age = _age_table(m, data.classes)
    if age is not None:
        tables.append(age)
    ingest = info.get("ingest") or {}
    counts = {
        "n_images": len(m),
        "n_patients": int(m["patient_key"].nunique()),
        "n_studies": int(m["study_key"].nunique()) if "study_key" in m.columns else None,
        "n_refused": len(data.quarantine),
        "classes": list(data.classes),
    }
    warnings = [str(w) for w in (ingest.get("warnings") or (info.get("external") or {}).get(
        "warnings") or [])]
    figure = FigureSpec(
        id="fig-classes", kind="class_counts", title="Images per class",
        caption="Images and patients per class, as labelled.",
        data={"classes": list(data.classes),
              "images": [int((m["label"] == i).sum()) for i in range(len(data.classes))],
              "patients": [int(m.loc[m["label"] == i, "patient_key"].nunique())
                           for i in range(len(data.classes))]})
    return Datasheet(source=_source(info), counts=counts, tables=tables,
                     quarantine=_quarantine(data), preprocessing=_preprocessing(data),
                     warnings=warnings, figures=[figure])
