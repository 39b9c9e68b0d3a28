"""Is a run directory one consistent state? Checked before anything is audited.

Each stage records what it was computed from: training stores the data
fingerprint of the run (:func:`data_fingerprint`) and a SHA-256 of every artifact
it published (``run.json['train']['artifacts']``); external predictions store the
digests of theirs (``run.json['external']['artifacts']``). :func:`verify_run` checks
that the arrays still have one row per manifest row, that the data have not
changed under the trained outputs, and that no artifact was replaced or edited
since its stage wrote it, and lists every problem at once with the stage to re-run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from audit.rundir import (
    ARRAY_SPECS,
    IMAGE_PROPERTIES,
    RunDir,
    RunDirMismatchError,
)

__all__ = ["artifact_digests", "data_fingerprint", "file_digest", "verify_run"]

MSG_INCONSISTENT = (
    "run directory {run} is not one consistent state, so it cannot be audited:\n{problems}"
)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artifact_digests(run: RunDir, names: list[str]) -> dict[str, str]:
    """``{relative path: SHA-256}`` of the artifacts ``names`` (paths relative to the run) present."""
    out = {}
    for name in names:
        p = run.path / name
        if p.is_file():
            out[name] = file_digest(p)
    return out


def data_fingerprint(run: RunDir, manifest: pd.DataFrame | None = None) -> str:
    """A cheap fingerprint of the data of a run directory (16 hex digits).

    Hashes the manifest columns that define the task (``sample_id``, ``label``,
    ``patient_key``, ``split``), the class names and, when the run has an image
    cache, its shape, dtype and up to 64 evenly spaced images.
    """
    if manifest is None:
        manifest = run.read_manifest()
    h = hashlib.sha256()
    cols = [c for c in ("sample_id", "label", "patient_key", "split") if c in manifest.columns]
    h.update(pd.util.hash_pandas_object(manifest[cols], index=False).to_numpy().tobytes())
    h.update(json.dumps(run.read_run_json().get("classes")).encode())
    if run.has("images"):
        images = run.read_array("images", mmap=True)
        h.update(str((images.shape, images.dtype.str)).encode())
        for i in np.unique(np.linspace(0, len(images) - 1, num=min(64, len(images))).astype(int)):
            h.update(np.ascontiguousarray(images[i]).tobytes())
    return h.hexdigest()[:16]


def _array_rows(run: RunDir, n: int) -> list[str]:
    problems = []
    names = [*ARRAY_SPECS, *(f"oof/masked/{v}" for v in run.masked_variants())]
    for name in names:
        if not run.has(name):
            continue
        try:
            arr = np.load(run.file(name), mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            problems.append(f"{run.file(name).name}: cannot be read ({err})")
            continue
        if arr.shape[0] != n:
            stage = "ingest" if name == "images" else "train"
            problems.append(f"{name}.npy has {arr.shape[0]} rows but manifest.parquet has {n}: "
                            f"re-run medaudit {stage}")
    if run.has(IMAGE_PROPERTIES):
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(run.file(IMAGE_PROPERTIES)).metadata.num_rows
        if rows != n:
            problems.append(f"{IMAGE_PROPERTIES} has {rows} rows but manifest.parquet has {n}: "
                            "re-run medaudit ingest")
    return problems


def _recorded_digests(run: RunDir, section: str, stage: str) -> list[str]:
    recorded = run.read_run_json().get(section) or {}
    problems = []
    for name, digest in (recorded.get("artifacts") or {}).items():
        p = run.path / name
        if not p.is_file():
            problems.append(f"{name} was written by medaudit {stage} but is missing: re-run "
                            f"medaudit {stage}")
        elif file_digest(p) != digest:
            problems.append(f"{name} changed after medaudit {stage} wrote it (its SHA-256 differs "
                            f"from run.json['{section}']['artifacts']): re-run medaudit {stage}")
    return problems


def verify_run(run: RunDir) -> None:
    """Refuse a run directory whose artifacts disagree with each other.

    Raises
    ------
    audit.rundir.RunArtifactMissingError
        When there is no manifest.
    audit.rundir.RunDirMismatchError
        Listing every problem (one line each, with the stage to re-run).
    """
    manifest = run.read_manifest()
    problems = _array_rows(run, len(manifest))
    info = run.read_run_json()
    train = info.get("train") or {}
    if train.get("data_fingerprint") and not problems:
        now = data_fingerprint(run, manifest)
        if now != train["data_fingerprint"]:
            problems.append(
                f"the trained outputs (oof/, train/) were computed on other data (fingerprint "
                f"{train['data_fingerprint']}, the data now {now}): re-run medaudit train"
            )
    problems += _recorded_digests(run, "train", "train")
    problems += _recorded_digests(run, "external", "audit-predictions")
    problems += _recorded_digests(run, "predict", "predict")
    if problems:
        raise RunDirMismatchError(MSG_INCONSISTENT.format(
            run=run.path, problems="\n".join(f"  - {p}" for p in problems)))


