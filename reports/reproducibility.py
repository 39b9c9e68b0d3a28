"""Section 6, reproducibility: settings, seeds, versions, input digests, artifacts, timings.

Everything here is read from the run directory, so rebuilding the report from the
same run gives the same content (``medaudit verify``). The versions of the packages
that render the report are recorded outside the content (``report.json``'s
``generator``), because they describe the machine that wrote the report, not the run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from audit.rundir import FINDINGS, IMAGE_PROPERTIES, IMAGES, MANIFEST, QUARANTINE
from reports._rundata import RunData
from reports.model import Reproducibility, Table

__all__ = ["RUN_ARTIFACTS", "build_reproducibility", "sha256_file"]

#: Artifacts of the run directory whose SHA-256 the report records (what it was built from).
RUN_ARTIFACTS = (MANIFEST, QUARANTINE, IMAGES, IMAGE_PROPERTIES, FINDINGS)


def sha256_file(path: Any) -> str:
    """SHA-256 of a file's content (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _flat(prefix: str, value: Any, rows: list[list[Any]]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, rows)
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        rows.append([prefix, json.dumps(value, separators=(",", ":"))])
    else:
        rows.append([prefix, ", ".join(map(str, value)) if isinstance(value, list) else value])


_PATH_OPTIONS = {"secret_file", "cache_dir", "pretrained_weights"}


def _config_tables(info: Mapping[str, Any]) -> list[Table]:
    out = []
    ingest = info.get("ingest") or {}
    if ingest.get("options"):
        opts = {k: ("set" if v else None) if k in _PATH_OPTIONS else v
                for k, v in ingest["options"].items()}
        rows: list[list[Any]] = []
        _flat("", opts, rows)
        out.append(Table("Ingestion settings", ["setting", "value"], rows,
                         note="paths are not recorded in reports ('set' when one was given)"))
    train = info.get("train") or {}
    if train.get("config"):
        cfg = dict(train["config"])
        if cfg.get("pretrained_weights"):
            cfg["pretrained_weights"] = "set"
        rows = []
        _flat("", cfg, rows)
        out.append(Table("Training settings (complete)", ["setting", "value"], rows,
                         note=f"config hash {train.get('config_hash', '?')}"))
    audit = info.get("audit") or {}
    for check, cfg in (audit.get("config") or {}).items():
        rows = []
        _flat("", cfg, rows)
        out.append(Table(f"Audit settings: {check}", ["setting", "value"], rows))
    return out


def _seeds(info: Mapping[str, Any]) -> Table:
    rows: list[list[Any]] = []
    train = info.get("train") or {}
    seeds = train.get("seeds") or {}
    if "seed" in seeds:
        rows.append(["training", "seed", seeds["seed"]])
    for i, s in enumerate(seeds.get("folds") or []):
        rows.append(["training", f"fold {i}", s])
    for check, cfg in ((info.get("audit") or {}).get("config") or {}).items():
        for k, v in (cfg or {}).items():
            if "seed" in k:
                rows.append([f"audit: {check}", k, v])
    return Table("Seeds", ["stage", "seed", "value"], rows,
                 note="every random draw of medaudit is seeded; the same run, settings and "
                 "versions give the same numbers")


def _versions(info: Mapping[str, Any]) -> Table:
    rows = []
    for stage in ("ingest", "train", "audit", "external"):
        for pkg, v in ((info.get(stage) or {}).get("versions") or {}).items():
            rows.append([pkg, str(v), stage])
    return Table("Package versions recorded by the run", ["package", "version", "stage"], rows,
                 note="the versions of the packages that rendered this report (cleanlab and "
                 "netcal included) are listed under 'Report environment'")


def _timings(info: Mapping[str, Any]) -> Table:
    rows: list[list[Any]] = []
    ingest = info.get("ingest") or {}
    for k in ("hash_seconds", "decode_seconds", "seconds"):
        if ingest.get(k) is not None:
            rows.append(["ingest", k.replace("_", " "), ingest[k]])
    if ingest.get("images_per_second") is not None:
        rows.append(["ingest", "images per second", ingest["images_per_second"]])
    train = info.get("train") or {}
    tim = train.get("timings") or {}
    if tim.get("seconds") is not None:
        rows.append(["train", "seconds", round(float(tim["seconds"]), 3)])
    for i, s in enumerate(tim.get("folds") or []):
        rows.append(["train", f"fold {i} seconds", round(float(s), 3)])
    if train.get("finished_at"):
        rows.append(["train", "finished at", train["finished_at"]])
    audit = info.get("audit") or {}
    if audit.get("seconds") is not None:
        rows.append(["audit", "seconds", audit["seconds"]])
    for check, s in (audit.get("timings_s") or {}).items():
        rows.append(["audit", f"{check} seconds", s])
    if audit.get("finished_at"):
        rows.append(["audit", "finished at", audit["finished_at"]])
    return Table("Timings", ["stage", "what", "value"], rows)


def _input_files(info: Mapping[str, Any]) -> dict[str, Any]:
    record = (info.get("ingest") or {}).get("input_files") or \
        (info.get("external") or {}).get("input_files")
    if not record and (info.get("external") or {}).get("inputs"):  # runs written before the record
        record = {"algorithm": "SHA-256", "files": {
            k: v.get("sha256") for k, v in info["external"]["inputs"].items()}}
    if not record:
        return {"algorithm": None, "n_files": 0, "list_sha256": None, "files": [],
                "note": "this run records no per-file digests (ingested by an older medaudit); "
                "re-ingest to record them"}
    files = [{"name": str(k), "digest": v} for k, v in (record.get("files") or {}).items()]
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"algorithm": record.get("algorithm"), "n_files": len(files),
            "list_sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
            "files": files, "note": "content digest of every input file, as ingestion read it; "
            "list_sha256 is the SHA-256 of the canonical JSON of the whole list"}


def _artifacts(data: RunData) -> list[dict[str, Any]]:
    out = []
    recorded = dict((data.info.get("train") or {}).get("artifacts") or {})
    recorded.update((data.info.get("external") or {}).get("artifacts") or {})
    for name in RUN_ARTIFACTS:
        p = data.run.path / name
        if p.is_file():
            out.append({"name": name, "sha256": sha256_file(p), "bytes": p.stat().st_size,
                        "recorded_by": "report"})
    for name, digest in sorted(recorded.items()):
        p = data.run.path / name
        out.append({"name": name, "sha256": digest,
                    "bytes": p.stat().st_size if p.is_file() else None,
                    "recorded_by": "train" if name in ((data.info.get("train") or {}).get(
                        "artifacts") or {}) else "audit-predictions"})
    return out


def build_reproducibility(data: RunData) -> Reproducibility:
    """Build section 6 from a loaded run (reads the artifacts to hash them)."""
    info = data.info
    train = info.get("train") or {}
    ingest = info.get("ingest") or {}
    ids = [["data fingerprint", train.get("data_fingerprint")],
           ["training config hash", train.get("config_hash")],
           ["ingest cache key", ingest.get("cache_key")],
           ["pseudonymisation key fingerprint",
            ingest.get("key_fingerprint") or (info.get("external") or {}).get("key_fingerprint")]]
    tables = [Table("Identifiers of this run", ["", "value"], [r for r in ids if r[1]]),
              _seeds(info), _versions(info), _timings(info), *_config_tables(info)]
    return Reproducibility(tables=tables, input_files=_input_files(info),
                           artifacts=_artifacts(data))
