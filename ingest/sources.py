"""Ingestion: turn a manifest CSV, a DICOM folder or a MedMNIST npz into a run directory.

The three entry points (:func:`ingest_manifest`, :func:`ingest_dicom_dir`,
:func:`ingest_npz`) share one path:

1. **Hash the inputs** (file contents, the label table, the options and the
   fingerprint of the pseudonymisation key) into a cache key, before decoding
   anything.
2. **Cache hit**: the artifacts of an earlier ingest with the same key are
   linked (or copied) into the run directory; nothing is decoded again.
3. **Cache miss**: validate the label table (bad rows to quarantine), decode
   every image (a file that fails goes to quarantine with a one-line reason;
   the run goes on), resize to ``image_size`` squared, quantise to uint8,
   compute image properties, pseudonymise identifiers, write the run directory
   and store a copy in the cache.

Identifiers (patient IDs, study UIDs, institution names) are replaced by keyed
hashes (:mod:`ingest.pseudonymize`) before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from audit.rundir import MANIFEST, QUARANTINE, RunDir, stale_after
from ingest.dicom import DicomReadError, read_dicom, read_dicom_header
from ingest.ingest_cache import (
    CACHE_VERSION,
    default_cache_dir,
    file_digest,
    inputs_key,
    load_entry,
    store_entry,
)
from ingest.limits import DEFAULT_MAX_IMAGE_MIB, regular_file_problem
from ingest.manifest import (
    MSG_NO_PATIENT,
    ManifestError,
    ParsedTable,
    read_csv_table,
    read_manifest_csv,
    validate_label_table,
)
from ingest.properties import compute_image_properties
from ingest.pseudonymize import key_fingerprint, load_or_create_secret
from ingest.rasters import RASTER_SUFFIXES, ImageReadError, normalize_array, read_raster
from ingest.run_manifest import build_run_manifest

__all__ = [
    "CACHE_VERSION",
    "IngestOptions",
    "IngestSummary",
    "default_cache_dir",
    "ingest_dicom_dir",
    "ingest_manifest",
    "ingest_npz",
]

logger = logging.getLogger(__name__)

DICOM_KEYS = ("path", "sop_instance_uid", "study_instance_uid")
_DICOM_META_COLUMNS = (
    "modality", "body_part", "manufacturer", "photometric_interpretation", "bits_stored",
    "transfer_syntax", "pixel_spacing_mm", "rows", "columns", "number_of_frames", "frame_used",
    "frame_policy", "windowing",
)  # fmt: skip
_DICOM_INT_COLUMNS = ("bits_stored", "rows", "columns", "number_of_frames", "frame_used")


@dataclass(frozen=True)
class IngestOptions:
    """How images are turned into the cache.

    Attributes
    ----------
    image_size : int
        Side S of the square cache images. Default 64: a ResNet-18 epoch over
        2,000 images takes seconds on a CPU at this size, while 12-bit chest
        films keep lesions of a few percent of the field visible.
    channels : {'gray', 'rgb'}
        ``gray`` stores one channel (colour images converted by luminance);
        ``rgb`` stores three (grey images replicated).
    frame_policy : {'middle', 'first'}
        Which frame of a multi-frame DICOM is used (recorded per image).
    classes : tuple of str, optional
        Class names in index order (default: inferred from the labels).
    secret_file : Path, optional
        Pseudonymisation key file (see :mod:`ingest.pseudonymize`).
    cache_dir : Path, optional
        Where ingests are cached (default :func:`default_cache_dir`).
    use_cache : bool
        Read and write the cache.
    max_image_mib : float
        Refuse an image whose decoded float32 size exceeds this many MiB, before
        decoding it (see :mod:`ingest.limits`).
    overwrite : bool
        Replace a run directory that holds the results of other inputs.
    require_labels : bool
        False for new data to be scored by a trained model (``medaudit predict``):
        labels become optional (``run.json['has_labels']`` says whether there are
        any) and a single class is allowed; ``classes`` must then be given.
    """

    image_size: int = 64
    channels: Literal["gray", "rgb"] = "gray"
    frame_policy: Literal["middle", "first"] = "middle"
    classes: tuple[str, ...] | None = None
    secret_file: Path | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    overwrite: bool = False
    max_image_mib: float = DEFAULT_MAX_IMAGE_MIB
    require_labels: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or not 8 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be an integer in [8, 1024]; got {self.image_size!r}")
        if self.channels not in ("gray", "rgb"):
            raise ValueError(f"channels must be 'gray' or 'rgb'; got {self.channels!r}")
        if isinstance(self.max_image_mib, bool) or not isinstance(self.max_image_mib, int | float) \
                or not self.max_image_mib > 0:
            raise ValueError(f"max_image_mib must be a positive number; got {self.max_image_mib!r}")
        if self.frame_policy not in ("middle", "first"):
            raise ValueError(f"frame_policy must be 'middle' or 'first'; got {self.frame_policy!r}")

    def cache_fields(self) -> dict[str, Any]:
        """The options that change the artifacts (part of the cache key)."""
        return {"image_size": self.image_size, "channels": self.channels,
                "frame_policy": self.frame_policy, "classes": list(self.classes or []),
                "require_labels": self.require_labels}


@dataclass
class IngestSummary:
    """What an ingest did.

    Attributes
    ----------
    run : RunDir
    n_accepted, n_refused : int
    cache_hit : bool
    seconds : float
    warnings : list of str
    """

    run: RunDir
    n_accepted: int
    n_refused: int
    cache_hit: bool
    seconds: float
    classes: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """A short human-readable summary."""
        lines = [
            f"ingested {self.n_accepted} images, refused {self.n_refused} "
            f"({'cache hit' if self.cache_hit else 'decoded'}) in {self.seconds:.1f} s",
            f"classes: {', '.join(self.classes)}",
        ]
        if self.n_refused:
            lines.append(f"refused inputs and reasons: {self.run.file(QUARANTINE)}")
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"run directory: {self.run.path}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- decoding
@dataclass
class _Decoded:
    pixels: np.ndarray
    meta: dict[str, Any]
    identifiers: dict[str, str | None]


def _decode_file(path: Path, options: IngestOptions) -> _Decoded:
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        pixels, meta = read_raster(path, max_image_mib=options.max_image_mib)
        return _Decoded(pixels, meta, {})
    d = read_dicom(path, frame_policy=options.frame_policy,  # type: ignore[arg-type]
                   max_image_mib=options.max_image_mib)
    return _Decoded(d.pixels, dict(d.meta), dict(d.identifiers))


def _to_cache(pixels: np.ndarray, size: int, channels: str) -> np.ndarray:
    """float ``(H, W)`` / ``(H, W, 3)`` in [0, 1] -> uint8 ``(C, size, size)``."""
    from PIL import Image

    if pixels.ndim == 3:
        if channels == "gray":
            gray = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            planes = [gray]
        else:
            planes = [pixels[..., c] for c in range(3)]
    else:
        planes = [pixels] if channels == "gray" else [pixels] * 3
    out = np.empty((len(planes), size, size), dtype=np.uint8)
    for c, plane in enumerate(planes):
        img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        out[c] = np.clip(np.rint(np.asarray(img) * 255.0), 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------- core
@dataclass
class _Plan:
    """Rows to decode plus everything refused before decoding."""

    rows: pd.DataFrame  # must have sample_id, label, label_name, _source, and metadata
    load: Callable[[int], _Decoded]  # row position -> decoded image (raises on failure)
    refused: list[dict[str, str]]
    classes: list[str]
    warnings: list[str]
    source: dict[str, Any]


#: Name of the digest recorded per input file in ``run.json['ingest']['input_files']``.
INPUT_DIGEST_ALGORITHM = "BLAKE2b-128"


def _run_ingest(
    plan_fn: Callable[[], _Plan],
    key_parts: Callable[[], tuple[list[str], dict[str, str]]],
    out: str | os.PathLike[str],
    options: IngestOptions,
) -> IngestSummary:
    """Ingest as one transaction of the run directory (see :mod:`audit.transaction`).

    ``key_parts`` returns the parts of the cache key and the content digest of each
    input file (``{name: digest}``, the label table first), recorded in ``run.json``
    under ``ingest.input_files`` so that a report can name every file a run was made of.

    Nothing of a run directory that already holds other inputs changes unless
    ``options.overwrite``; with it, the old run stays complete until the new one
    has been decoded and is published in its place (its trained models, findings
    and reports are removed then, and ``run.json`` starts afresh).
    """
    t0 = time.perf_counter()
    run = RunDir(out)
    secret = load_or_create_secret(options.secret_file)
    with run.transaction("medaudit ingest") as staged:
        parts, digests = key_parts()
        cache_key = inputs_key(parts, options.cache_fields(), key_fingerprint(secret))
        t_hash = time.perf_counter() - t0
        previous = run.read_run_json().get("ingest", {})
        if previous.get("cache_key") == cache_key and run.has(MANIFEST) and run.has("images"):
            return IngestSummary(run, previous["n_accepted"], previous["n_refused"], True,
                                 time.perf_counter() - t0, run.class_names(),
                                 previous.get("warnings", []))
        stale_paths, _ = stale_after("ingest")
        present = [a for a in stale_paths if (run.path / a).exists()]
        if present and not options.overwrite:
            raise ValueError(
                f"run directory {run.path} already holds results of other inputs "
                f"({', '.join(present)}); choose a new output directory or pass overwrite=True "
                "to replace them"
            )
        staged.remove(stale_paths)
        entry = (options.cache_dir or default_cache_dir()) / "ingest" / cache_key
        info = load_entry(entry, staged.path) if options.use_cache else None
        hit = info is not None
        if info is None:
            info = _decode_all(plan_fn(), staged, options, key=secret)
            if options.use_cache:
                store_entry(entry, staged.path, info)
        info.update({"cache_key": cache_key, "cache_hit": hit, "hash_seconds": round(t_hash, 3),
                     "seconds": round(time.perf_counter() - t0, 3),
                     "options": _jsonable(asdict(options)),
                     "key_fingerprint": key_fingerprint(secret), "versions": _versions(),
                     "input_files": {"algorithm": INPUT_DIGEST_ALGORITHM, "files": digests}})
        staged.update_run_json({"classes": info["classes"], "ingest": info,
                                "has_labels": info.get("has_labels", True)}, replace=True)
    for w in info.get("warnings", []):
        warnings.warn(w, stacklevel=3)
    return IngestSummary(run, info["n_accepted"], info["n_refused"], hit,
                         time.perf_counter() - t0, info["classes"], info.get("warnings", []))


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _versions() -> dict[str, str]:
    import pydicom
    import sklearn

    out = {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
           "pydicom": pydicom.__version__, "scikit-learn": sklearn.__version__}
    try:
        from importlib.metadata import version

        out["medaudit"] = version("medaudit")
    except Exception:  # pragma: no cover - not installed
        out["medaudit"] = "unknown"
    return out


def _decode_all(plan: _Plan, run: RunDir, options: IngestOptions, *, key: bytes) -> dict[str, Any]:
    t0 = time.perf_counter()
    n = len(plan.rows)
    size, c = options.image_size, 1 if options.channels == "gray" else 3
    images = np.empty((n, c, size, size), dtype=np.uint8)
    keep = np.zeros(n, dtype=bool)
    metas: list[dict[str, Any]] = [{} for _ in range(n)]
    idents: list[dict[str, Any]] = [{} for _ in range(n)]
    refused = list(plan.refused)
    for i in range(n):
        source = str(plan.rows["_source"].iat[i])
        prefixes = [str(plan.rows["abs_path"].iat[i])] if "abs_path" in plan.rows else []
        prefixes.append(source)
        try:
            d = plan.load(i)
            images[i] = _to_cache(d.pixels, size, options.channels)
        except (DicomReadError, ImageReadError) as err:
            refused.append({"source": source, "reason": _one_line(str(err), *prefixes)})
            continue
        except Exception as err:  # an unexpected decoder failure refuses the file only
            refused.append({"source": source, "reason": "could not decode "
                            f"({type(err).__name__}: {_one_line(str(err), *prefixes)})"})
            continue
        keep[i] = True
        metas[i], idents[i] = d.meta, d.identifiers
    t_decode = time.perf_counter() - t0
    rows = plan.rows.copy()
    rows = _merge_decoded_meta(rows, metas, idents)
    rows, images_kept = rows[keep].reset_index(drop=True), images[keep]
    warn = list(plan.warnings)
    if len(rows) == 0:
        raise ManifestError(f"no image could be ingested: all {n} inputs were refused ({refused[:3]} ...)")
    if options.require_labels and rows["label"].nunique() < 2:
        raise ManifestError(
            f"only one class among the {len(rows)} images that could be decoded; an audit needs two "
            f"({len(refused)} inputs were refused: see their reasons in quarantine.csv)"
        )
    if "patient_id" not in rows.columns or rows["patient_id"].isna().all():
        if MSG_NO_PATIENT not in warn:
            warn.append(MSG_NO_PATIENT)
    manifest = build_run_manifest(rows, key=key)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_manifest(manifest)
    run.write_quarantine(pd.DataFrame(refused, columns=["source", "reason"]))
    run.write_array("images", images_kept)
    props = compute_image_properties(
        images_kept, manifest["sample_id"].tolist(),
        orig_height=_numeric(rows, "_orig_h"),
        orig_width=_numeric(rows, "_orig_w"),
        bits_stored=_numeric(rows, "_bits"),
    )
    run.write_image_properties(props)
    counts = manifest["label_name"].value_counts().to_dict()
    return {
        "source": plan.source,
        "classes": plan.classes,
        "n_accepted": len(manifest),
        "n_refused": len(refused),
        "class_counts": {k: int(v) for k, v in counts.items()},
        "has_labels": bool((manifest["label"] >= 0).all()),
        "n_patients": int(manifest["patient_key"].nunique()),
        "image_shape": list(images_kept.shape[1:]),
        "decode_seconds": round(t_decode, 3),
        "images_per_second": round(n / max(t_decode, 1e-9), 1),
        "warnings": warn,
    }


def _numeric(rows: pd.DataFrame, col: str) -> np.ndarray | None:
    return pd.to_numeric(rows[col], errors="coerce").to_numpy(float) if col in rows else None


def _one_line(text: str, *prefixes: str) -> str:
    """One line, without a leading ``<path>: `` the quarantine row already names."""
    line = " ".join(text.split())
    for p in prefixes:
        line = line.replace(f", at path={p!r}", "").replace(f" at path={p!r}", "")
        line = line.replace(f" (path={p!r})", "")
    # the same, whatever form of the path (absolute, relative) the reader was given
    line = re.sub(r",? at path=('[^']*'|\"[^\"]*\")", "", line)
    line = re.sub(r" \(path=('[^']*'|\"[^\"]*\")\)", "", line)
    for p in prefixes:
        if line.startswith(p + ": "):
            return line[len(p) + 2 :]
    return line


def _merge_decoded_meta(rows: pd.DataFrame, metas: list[dict[str, Any]],
                        idents: list[dict[str, Any]]) -> pd.DataFrame:
    """Fill metadata from the decoders where the label table has none."""
    meta = pd.DataFrame(metas, index=rows.index)
    ident = pd.DataFrame(idents, index=rows.index)

    def fill(col: str, values: pd.Series) -> None:
        if col in rows.columns:
            rows[col] = rows[col].where(rows[col].notna(), values)
        else:
            rows[col] = values

    for col in ("sex", "age", "view", "scanner"):
        if col in meta:
            fill(col, meta[col])
    if "patient_id" in ident:
        fill("patient_id", ident["patient_id"])
    if "study_instance_uid" in ident:
        fill("study_id", ident["study_instance_uid"])
    if "institution_name" in ident:
        fill("site", ident["institution_name"])
    if "transfer_syntax_uid" in meta and meta["transfer_syntax_uid"].notna().any():
        for col in _DICOM_META_COLUMNS:
            if col in meta and meta[col].notna().any():
                values = meta[col]
                if col in _DICOM_INT_COLUMNS:
                    values = pd.to_numeric(values, errors="coerce").astype("Int64")
                rows[f"dicom_{col}"] = values
    for col, new in (("rows", "_orig_h"), ("columns", "_orig_w"), ("bits_stored", "_bits")):
        if col in meta:
            rows[new] = meta[col]
    return rows


# ---------------------------------------------------------------------------- sources
def ingest_manifest(
    manifest_csv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: IngestOptions = IngestOptions(),
) -> IngestSummary:
    """Ingest images listed in a manifest CSV (see :mod:`ingest.manifest`).

    Parameters
    ----------
    manifest_csv : path-like
        The CSV (``path``, ``label``, optional metadata columns).
    out : path-like
        The run directory to write.
    options : IngestOptions

    Returns
    -------
    IngestSummary

    Raises
    ------
    ManifestError
        For table-level problems of the manifest (CLI exit code 2).
    """
    csv = Path(manifest_csv)

    def parse() -> ParsedTable:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read_manifest_csv(csv, classes=options.classes,
                                     require_labels=options.require_labels)

    parsed: list[ParsedTable] = []

    def key_parts() -> tuple[list[str], dict[str, str]]:
        table = parse()
        parsed.append(table)
        digests = {csv.name: file_digest(csv)}
        parts = [digests[csv.name]]
        for r, a in zip(table.rows["rel_path"], table.rows["abs_path"]):
            digests[str(r)] = file_digest(Path(a))
            parts.append(f"{r}:{digests[str(r)]}")
        return parts, digests

    def plan() -> _Plan:
        table = parsed[0] if parsed else parse()
        rows = table.rows
        if "sample_id" not in rows.columns:
            rows["sample_id"] = rows["rel_path"]
        rows["sample_id"] = rows["sample_id"].fillna(rows["rel_path"]).astype(str)
        rows["_source"] = rows["rel_path"]
        paths = [Path(a) for a in rows["abs_path"]]
        refused = table.refused.to_dict("records")
        return _Plan(rows, lambda i: _load_path(paths[i], options), refused,
                     list(table.classes.names), table.warnings,
                     {"kind": "manifest", "path": str(csv)})

    return _run_ingest(plan, key_parts, out, options)


def _load_path(path: Path, options: IngestOptions) -> _Decoded:
    problem = regular_file_problem(path)
    if problem is not None:
        fix = ("check the path (relative to the manifest)" if problem.startswith("no such")
               else "list image files only")
        raise ImageReadError(f"{path}: {problem}; {fix}")
    return _decode_file(path, options)


def _walk_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def ingest_dicom_dir(
    dicom_dir: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    options: IngestOptions = IngestOptions(),
) -> IngestSummary:
    """Ingest a folder of DICOM files with labels joined from a CSV.

    The labels CSV has a ``label`` column and one key column saying how to join:
    ``sop_instance_uid`` (one image), ``study_instance_uid`` (every image of the
    study) or ``path`` (relative to ``dicom_dir``). Patient ID, institution
    (hashed into ``site``), scanner, sex, age, view and acquisition fields come
    from the headers. With ``options.require_labels=False`` the labels CSV may be
    None: every file of the folder is a row without a label.

    Raises
    ------
    ManifestError
        When the labels CSV is unusable as a whole.
    FileNotFoundError
        When the folder or the CSV does not exist.
    """
    if labels_csv is None:
        if options.require_labels:
            raise ValueError("labels_csv is needed unless options.require_labels is False")
        return _ingest_unlabeled_dicom_dir(Path(dicom_dir), out, options)
    root, csv = Path(dicom_dir), Path(labels_csv)
    if not root.is_dir():
        raise FileNotFoundError(f"DICOM folder {root} not found")
    if not csv.is_file():
        raise FileNotFoundError(f"labels CSV {csv} not found")
    raw_labels = read_csv_table(csv, what="labels CSV")
    head = raw_labels.columns.tolist()
    keys = [k for k in DICOM_KEYS if k in head]
    if not keys:
        raise ManifestError(
            f"{csv.name}: needs a key column among {list(DICOM_KEYS)} to join labels to "
            f"DICOM files; found none in columns {head}"
        )
    if len(keys) > 1:
        raise ManifestError(
            f"{csv.name}: has several key columns {keys}; the labels must be joined to the DICOM "
            "files one way only: keep one of them (path, sop_instance_uid or study_instance_uid) "
            "and remove the others"
        )
    key_col = keys[0]
    files = _walk_files(root)

    def key_parts() -> tuple[list[str], dict[str, str]]:
        digests = {csv.name: file_digest(csv)}
        parts = [digests[csv.name], key_col]
        for f in files:
            rel = f.relative_to(root).as_posix()
            digests[rel] = file_digest(f)
            parts.append(f"{rel}:{digests[rel]}")
        return parts, digests

    def plan() -> _Plan:
        raw = raw_labels
        # UIDs are identifiers: they must not appear in clear text in quarantine.csv.
        table = validate_label_table(raw, source=csv.name, key_col=key_col, classes=options.classes,
                                     quote_key=key_col == "path")
        labels = table.rows.set_index(table.rows[key_col].str.strip())
        refused = table.refused.to_dict("records")
        records, matched = [], set()
        for f in files:
            rel = f.relative_to(root).as_posix()
            if key_col == "path":
                k: str | None = rel
            else:
                try:
                    hdr = read_dicom_header(f)
                except DicomReadError as err:
                    refused.append({"source": rel, "reason": _one_line(str(err), str(f), rel)})
                    continue
                k = hdr.identifiers.get(key_col)
            if k is None or k not in labels.index:
                refused.append({"source": rel, "reason": f"no label in {csv.name} for this file "
                                f"(joined on {key_col}); add a row for it or remove the file"})
                continue
            matched.add(k)
            rec = labels.loc[k].to_dict()
            for c in DICOM_KEYS:  # identifiers and the key are not metadata
                rec.pop(c, None)
            rec.update({"rel_path": rel, "abs_path": str(f), "sample_id": rel, "_source": rel})
            records.append(rec)
        for k, r in labels.iterrows():
            if k not in matched:
                refused.append({"source": f"{csv.name} row {r['_row']}",
                                "reason": f"no DICOM file under {root.name}/ matches this row's "
                                f"{key_col}; check the key or remove the row"})
        rows = pd.DataFrame.from_records(records)
        if rows.empty:
            raise ManifestError(f"no file in {root} matched a row of {csv.name} on {key_col}")
        paths = [Path(a) for a in rows["abs_path"]]
        return _Plan(rows, lambda i: _load_path(paths[i], options), refused,
                     list(table.classes.names), table.warnings,
                     {"kind": "dicom-dir", "path": str(root), "labels": str(csv), "key": key_col})

    return _run_ingest(plan, key_parts, out, options)


def _ingest_unlabeled_dicom_dir(root: Path, out: str | os.PathLike[str],
                                options: IngestOptions) -> IngestSummary:
    """Every file under ``root`` as an unlabeled row (``medaudit predict --dicom-dir``)."""
    if not root.is_dir():
        raise FileNotFoundError(f"DICOM folder {root} not found")
    files = _walk_files(root)
    if not files:
        raise ManifestError(f"no files under {root}")

    def key_parts() -> tuple[list[str], dict[str, str]]:
        digests = {f.relative_to(root).as_posix(): file_digest(f) for f in files}
        return ["unlabeled", *(f"{r}:{d}" for r, d in digests.items())], digests

    def plan() -> _Plan:
        raw = pd.DataFrame({"path": [f.relative_to(root).as_posix() for f in files]})
        table = validate_label_table(raw, source=root.name, key_col="path",
                                     classes=options.classes, require_labels=False)
        rows = table.rows
        rows["rel_path"] = rows["path"]
        rows["abs_path"] = [str(root / r) for r in rows["path"]]
        rows["sample_id"] = rows["path"]
        rows["_source"] = rows["path"]
        rows = rows.drop(columns=["path"])
        paths = [Path(a) for a in rows["abs_path"]]
        return _Plan(rows, lambda i: _load_path(paths[i], options), table.refused.to_dict("records"),
                     list(table.classes.names), table.warnings,
                     {"kind": "dicom-dir", "path": str(root), "labels": None})

    return _run_ingest(plan, key_parts, out, options)


#: Class names of the MedMNIST BreastMNIST npz (label index order).
NPZ_SPLITS = ("train", "val", "test")


def ingest_npz(
    npz_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: IngestOptions = IngestOptions(),
) -> IngestSummary:
    """Ingest a MedMNIST-layout npz (``train_images``, ``train_labels``, ``val_*``, ``test_*``).

    The split is kept in the ``split`` column; ``sample_id`` is ``<split>-<index>``.
    Each image is its own patient (MedMNIST carries no patient IDs).

    Raises
    ------
    ManifestError
        When no ``<split>_images`` / ``<split>_labels`` pair is present or shapes disagree.
    """
    p = Path(npz_path)
    if not p.is_file():
        raise FileNotFoundError(f"npz file {p} not found")

    def plan() -> _Plan:
        try:
            data = np.load(p, allow_pickle=False)
            files = list(data.files)
        except Exception as err:  # not a zip, truncated, a single .npy array ...
            raise ManifestError(
                f"{p}: not a readable .npz archive ({type(err).__name__}: "
                f"{' '.join(str(err).split())}); expected a MedMNIST-style file written by "
                "numpy.savez"
            ) from None
        imgs, records = [], []
        present = [s for s in NPZ_SPLITS if f"{s}_images" in data and f"{s}_labels" in data]
        with_images = [s for s in NPZ_SPLITS if f"{s}_images" in data]
        unlabeled = not options.require_labels and len(present) < len(with_images)
        if unlabeled:  # new data to score: labels are ignored unless every split has them
            present = with_images
        if not present:
            raise ManifestError(
                f"{p.name}: expected MedMNIST arrays like 'train_images' and 'train_labels'; "
                f"found {sorted(files)}"
            )
        for s in present:
            x = data[f"{s}_images"]
            y = np.zeros(len(x), np.int64) if unlabeled else np.asarray(data[f"{s}_labels"])
            if y.ndim == 2 and y.shape[1] > 1:
                raise ManifestError(
                    f"{p.name}: '{s}_labels' has shape {y.shape} (multi-label); "
                    "only single-label classification is supported"
                )
            y = y.reshape(-1)
            if len(x) != len(y):
                raise ManifestError(f"{p.name}: '{s}_images' has {len(x)} rows but '{s}_labels' {len(y)}")
            for i in range(len(y)):
                imgs.append(x[i])
                records.append({"sample_id": f"{s}-{i:05d}", "label": str(int(y[i])), "split": s,
                                "_source": f"{p.name}:{s}_images[{i}]"})
        raw = pd.DataFrame.from_records(records)
        table_in = raw.drop(columns=["_source", *(["label"] if unlabeled else [])])
        table = validate_label_table(table_in, source=p.name, key_col="sample_id",
                                     classes=options.classes,
                                     require_labels=options.require_labels)
        rows = table.rows
        rows["_source"] = raw["_source"].to_numpy()[rows["_row"].to_numpy() - 1]
        pos = rows["_row"].to_numpy() - 1

        def load(i: int) -> _Decoded:
            arr = imgs[pos[i]]
            pixels, meta = normalize_array(np.asarray(arr), source=rows["_source"].iat[i])
            return _Decoded(pixels, meta, {})

        rows["_orig_h"], rows["_orig_w"] = imgs[0].shape[0], imgs[0].shape[1]
        rows["_bits"] = 8 if imgs[0].dtype == np.uint8 else None
        return _Plan(rows, load, table.refused.to_dict("records"), list(table.classes.names),
                     [], {"kind": "npz", "path": str(p)})

    def key_parts() -> tuple[list[str], dict[str, str]]:
        digest = file_digest(p)
        return [digest], {p.name: digest}

    return _run_ingest(plan, key_parts, out, options)
