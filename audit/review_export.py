"""Export a run's review decisions: a decisions CSV, the trail, and a new corrected manifest.

``manifest.parquet`` is never rewritten. The corrected manifest is a new CSV in the
layout ``medaudit ingest --manifest`` reads (``path``, ``label`` as a class name,
``sample_id``, ``patient_id`` and the metadata columns), so the next round starts
from the corrected labels:

* a label issue marked **confirm error** takes the label the reviewer confirmed
  (the suggested label shown when deciding);
* a pair marked **same patient** joins the two patients: every image of the second
  patient gets the first one's key (patient keys stay pseudonyms: re-ingesting hashes
  them again, consistently);
* every other decision leaves the row as it was.

Only reviews of the run's current data (its data fingerprint) are exported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audit.consistency import data_fingerprint
from audit.reviews import ReviewStore
from audit.rundir import RunDir

__all__ = ["EXPORT_FILES", "ExportResult", "export_reviews"]

#: Files written into the output folder.
EXPORT_FILES = {
    "decisions": "review_decisions.csv",
    "trail": "review_trail.csv",
    "manifest": "corrected_manifest.csv",
    "labels": "corrected_labels.csv",
}
#: Manifest columns written under another name (the ingest names).
_RENAME = {"patient_key": "patient_id", "study_key": "study_id"}
_DROP = {"label", "label_name", "path"}


@dataclass
class ExportResult:
    """What :func:`export_reviews` wrote."""

    paths: dict[str, Path]
    n_decisions: int
    n_labels_corrected: int
    n_patients_merged: int
    notes: list[str] = field(default_factory=list)


def _image_base(info: dict) -> Path | None:
    src = (info.get("ingest") or {}).get("source") or {}
    if src.get("kind") == "manifest" and src.get("path"):
        return Path(src["path"]).parent
    if src.get("kind") == "dicom-dir" and src.get("path"):
        return Path(src["path"])
    return None


def _merge_patients(keys: pd.Series, pairs: list[tuple[str, str]]) -> tuple[pd.Series, int]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    merged = 0
    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            merged += 1
    return keys.map(lambda k: find(k)), merged


def export_reviews(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False
) -> ExportResult:
    """Write the decisions, the trail and a corrected manifest of a run into ``out``.

    Parameters
    ----------
    run_dir : path-like
        An ingested run directory (with or without ``reviews.sqlite``).
    out : path-like
        Folder to write :data:`EXPORT_FILES` into (created); never the run directory.
    overwrite : bool
        Replace export files already in ``out``.

    Returns
    -------
    ExportResult

    Raises
    ------
    ValueError
        When ``out`` is the run directory or inside it, or holds an export and
        ``overwrite`` is False.
    audit.rundir.RunArtifactMissingError
        When the run has no manifest.
    """
    run = RunDir(Path(run_dir))
    manifest = run.read_manifest()
    out = Path(out)
    here = run.path.resolve()
    if out.resolve() == here or here in out.resolve().parents:
        raise ValueError(
            f"out={out} is inside the run directory {run.path}; the run is never "
            "rewritten: choose a folder outside it"
        )
    existing = [n for n in EXPORT_FILES.values() if (out / n).exists()]
    if existing and not overwrite:
        raise ValueError(
            f"{out} already holds {', '.join(existing)}; pass overwrite=True or choose a new out"
        )
    out.mkdir(parents=True, exist_ok=True)
    for n in existing:
        (out / n).unlink()
    fp = data_fingerprint(run, manifest)
    store = ReviewStore(run.path, fp)
    current, trail = store.current(), store.trail()
    notes = []
    hidden = store.n_other_fingerprints()
    if hidden:
        notes.append(
            f"{hidden} review(s) of other data in this directory (before a re-ingest) were left out"
        )

    dec = current.copy()
    split = dec["item"].str.split("|", n=1, expand=True) if len(dec) else None
    dec.insert(2, "sample_id", split[0] if split is not None else [])
    dec.insert(3, "sample_id_b", split[1] if split is not None and split.shape[1] > 1 else None)
    dec = dec.drop(columns=["id"])
    paths = {"decisions": out / EXPORT_FILES["decisions"], "trail": out / EXPORT_FILES["trail"]}
    dec.to_csv(paths["decisions"], index=False)
    trail.to_csv(paths["trail"], index=False)

    classes = run.class_names()
    m = manifest.copy()
    label = m["label_name"].astype(str).copy()
    sid = m["sample_id"].astype(str)
    fixes = current[(current["kind"] == "label_issue") & (current["decision"] == "confirm_error")]
    fix = {
        str(i): str(c)
        for i, c in zip(fixes["item"], fixes["corrected_label"])
        if c is not None and str(c) in classes
    }
    changed = sid.map(fix).astype(object)
    n_fixed = int((changed.notna() & (changed != label)).sum())
    label = label.where(changed.isna(), changed)
    same = current[(current["kind"] == "duplicate") & (current["decision"] == "same_patient")]
    key_of = dict(zip(sid, m["patient_key"].astype(str)))
    pairs = []
    for item in same["item"]:
        a, _, b = str(item).partition("|")
        if a in key_of and b in key_of:
            pairs.append((key_of[a], key_of[b]))
    patients, n_merged = _merge_patients(m["patient_key"].astype(str), pairs)

    base = _image_base(run.read_run_json())
    if "path" in m.columns and base is not None:
        rel = m["path"].astype(str)
        abs_path = [p if Path(p).is_absolute() else str(base / p) for p in rel]
        missing = sum(not Path(p).is_file() for p in abs_path)
        if missing:
            notes.append(
                f"{missing} image file(s) of the manifest are not at their recorded "
                f"path under {base} any more; fix their paths before ingesting"
            )
        table = pd.DataFrame({"path": abs_path, "label": label.to_numpy()})
        kind = "manifest"
    else:
        table = pd.DataFrame({"label": label.to_numpy()})
        kind = "labels"
        notes.append(
            "the run holds no image paths (npz or external predictions), so there is "
            "no manifest to ingest again; corrected_labels.csv has the labels by sample_id"
        )
    table["sample_id"] = sid.to_numpy()
    table["patient_id"] = patients.to_numpy()
    for c in m.columns:
        if c in _DROP or c in ("sample_id", "patient_key"):
            continue
        values = m[c]
        if str(c).startswith("label_"):  # annotator ratings: class index -> class name
            idx = pd.to_numeric(values, errors="coerce")
            values = pd.Series(
                [
                    classes[int(v)] if np.isfinite(v) and 0 <= int(v) < len(classes) else None
                    for v in idx
                ],
                index=m.index,
            )
        table[_RENAME.get(c, c)] = values.to_numpy()
    paths[kind] = out / EXPORT_FILES[kind]
    table.to_csv(paths[kind], index=False)
    return ExportResult(paths, len(dec), n_fixed, n_merged, notes)
