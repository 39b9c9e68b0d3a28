"""The content-addressed ingest cache: decode a dataset once, reuse it for every run.

An entry lives in ``<cache_dir>/ingest/<key>/``; the key hashes every input file's
content, the label table, the options that change the artifacts, a cache version
and the fingerprint of the pseudonymisation key (:func:`inputs_key`). A later
ingest of the same data copies the entry's artifacts into its run directory instead
of decoding.

Entries are never shared writable: their files are made read-only when stored, a
run receives a **copy** (a reflink where the file system supports one, so a copy of
a large ``images.npy`` costs no space), and each file's size and modification time
are recorded so that an entry changed behind the cache's back is ignored and
decoded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from audit.rundir import IMAGE_PROPERTIES, IMAGES, MANIFEST, QUARANTINE
from ingest.limits import regular_file_problem

__all__ = [
    "CACHED_FILES",
    "CACHE_VERSION",
    "copy_file",
    "default_cache_dir",
    "file_digest",
    "inputs_key",
    "load_entry",
    "store_entry",
]

logger = logging.getLogger(__name__)

#: Bumped whenever decoding, refusal messages or the cache layout change, so old entries are not reused.
CACHE_VERSION = 3
#: Run-directory artifacts an entry holds (plus its ``ingest.json`` record).
CACHED_FILES = (MANIFEST, QUARANTINE, IMAGES, IMAGE_PROPERTIES)
_RECORD = "ingest.json"
_FICLONE = 0x40049409  # Linux ioctl: share the extents of another file (btrfs, XFS)


def default_cache_dir() -> Path:
    """``$MEDAUDIT_CACHE_DIR`` or ``$XDG_CACHE_HOME/medaudit`` or ``~/.cache/medaudit``."""
    env = os.environ.get("MEDAUDIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "medaudit"


def file_digest(path: str | os.PathLike[str]) -> str:
    """BLAKE2b-128 of a regular file's content; a placeholder for anything else.

    Devices, pipes and sockets are never read (``/dev/zero`` would never end);
    they hash to their problem, and decoding refuses them later with a reason.
    """
    problem = regular_file_problem(path)
    if problem is not None:
        return f"<{problem}>"
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError:
        return "<unreadable>"
    return h.hexdigest()


def inputs_key(parts: Iterable[str], options: Mapping[str, Any], key_fp: str) -> str:
    """The cache key: the input digests, the options that change artifacts, the key's fingerprint."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "opts": dict(options), "key": key_fp},
                        sort_keys=True).encode())
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` (a reflink when the file system can; never a hard link)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.copy-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        import fcntl

        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
    except (ImportError, OSError):
        shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def _stats(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_entry(entry: Path, dest: Path) -> dict[str, Any] | None:
    """Copy a cache entry's artifacts into ``dest``; its ingest record, or None on a miss.

    An entry whose files changed since they were stored (size or modification
    time) is a miss, with a warning.
    """
    record_path = entry / _RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        files = record["files"]
        for name, want in files.items():
            if _stats(entry / name) != want:
                logger.warning("ingest cache entry %s was modified after it was stored (%s); "
                               "decoding again", entry, name)
                return None
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("ingest cache entry %s is unreadable; decoding again", entry)
        return None
    for name in files:
        copy_file(entry / name, dest / name)
    return dict(record["info"])


def store_entry(entry: Path, src: Path, info: Mapping[str, Any]) -> None:
    """Store the artifacts in ``src`` as a read-only cache entry (a failure only warns)."""
    tmp = entry.with_name(f"{entry.name}.tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        files = {}
        for name in CACHED_FILES:
            if (src / name).exists():
                copy_file(src / name, tmp / name)
                os.chmod(tmp / name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                files[name] = _stats(tmp / name)
        record = {"files": files, "info": json.loads(json.dumps(dict(info), default=str))}
        (tmp / _RECORD).write_text(json.dumps(record), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    except OSError as err:  # a read-only or full cache must not fail the run
        logger.warning("could not write the ingest cache %s: %s", entry, err)
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp, ignore_errors=True)
