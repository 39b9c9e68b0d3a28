"""How a run directory changes: one writer at a time, and whole stages published at once.

A stage (ingest, train, audit, ...) never writes into the published run directory
while it works. It holds the directory's **writer lock** for its whole duration and
writes its artifacts into a **staging folder** (``.staging/<stage>-<id>/``, laid out
like the run directory). When it has finished, :meth:`RunTransaction.commit` writes a
journal (``PUBLISH.json``: the files to move into place and the paths to remove),
then applies it with atomic renames. A failure or a kill *before* the journal exists
leaves the old state untouched (the staging folder is discarded by the next writer);
a kill *while* the journal is applied is rolled forward by the next writer (or
reader, see :func:`recover`), because the journal only names complete files and
applying it twice does no harm. Either way, the run directory shows the old complete
state or the new complete state, never a mix.

The lock is an exclusive ``flock`` on ``.medaudit.lock`` taken without waiting: a
second writer fails at once with :class:`RunDirBusyError` naming the holder (pid,
host, stage, start time). The kernel releases the lock when its holder dies, so a
lock left by a killed process is recovered by simply taking it again. Within one
process the lock is re-entrant. The file system must support ``flock`` and atomic
``rename`` within a directory (local disks and NFSv4 do).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "LOCK_FILE",
    "STAGING_DIR",
    "RunDirBusyError",
    "RunTransaction",
    "recover",
    "writer_lock",
]

LOCK_FILE = ".medaudit.lock"
STAGING_DIR = ".staging"
JOURNAL = "PUBLISH.json"

MSG_BUSY = (
    "run directory {path} is in use by another medaudit process ({stage}, pid {pid} on "
    "{host}, started {started}); wait for it to finish or stop it, then try again"
)

_held: dict[Path, int] = {}
_held_guard = threading.Lock()


class RunDirBusyError(RuntimeError):
    """Another process holds the run directory's writer lock."""


def _describe_holder(lock_path: Path) -> dict[str, Any]:
    try:
        info = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    return {"stage": info.get("stage", "unknown stage"), "pid": info.get("pid", "?"),
            "host": info.get("host", "?"), "started": info.get("started", "?")}


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike[str], stage: str, *, recover_first: bool = True
                ) -> Iterator[None]:
    """Hold the exclusive writer lock of run directory ``path`` inside the block.

    Parameters
    ----------
    path : path-like
        The run directory (created if missing).
    stage : str
        What holds the lock, shown to a second writer (e.g. ``"medaudit train"``).
    recover_first : bool
        Finish interrupted publishes (:func:`recover`) once the lock is taken.

    Raises
    ------
    RunDirBusyError
        At once, when another process holds the lock.
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"run directory {root} is a file, not a folder; choose another path")
    root.mkdir(parents=True, exist_ok=True)
    key = root.resolve()
    with _held_guard:
        if key in _held:
            _held[key] += 1
            reentrant = True
        else:
            reentrant = False
    if reentrant:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    import fcntl

    lock_path = key / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirBusyError(MSG_BUSY.format(path=root, **_describe_holder(lock_path))) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"stage": stage, "pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        with _held_guard:
            _held[key] = 1
        if recover_first:
            recover(key, locked=True)
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _apply(root: Path, staging: Path, journal: Mapping[str, Any]) -> None:
    """Apply a publish journal (idempotent: safe to repeat after a crash)."""
    for rel in journal.get("remove", []):
        _remove(root / rel)
    for rel in journal.get("move", []):
        src, dst = staging / rel, root / rel
        if not src.exists():
            continue  # moved before a crash
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(src, dst)
    _fsync_dir(root)
    _discard(staging)


def _discard(staging: Path) -> None:
    """Delete a staging folder, and ``.staging/`` when it is left empty."""
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):
        staging.parent.rmdir()


def recover(path: str | os.PathLike[str], *, locked: bool = False) -> list[str]:
    """Finish interrupted publishes and discard abandoned staging folders.

    Called by every writer when it takes the lock. Readers may call it too: it then
    takes the lock only if it is free and does nothing otherwise.

    Parameters
    ----------
    path : path-like
        The run directory.
    locked : bool
        The caller holds the writer lock.

    Returns
    -------
    list of str
        The staging folders whose publish was completed.
    """
    root = Path(path)
    staging_root = root / STAGING_DIR
    if not staging_root.is_dir():
        return []
    if not locked:
        try:
            with writer_lock(root, "recovery", recover_first=False):
                return recover(root, locked=True)
        except RunDirBusyError:
            return []
    done = []
    for staging in sorted(p for p in staging_root.iterdir() if p.is_dir()):
        journal_path = staging / JOURNAL
        if journal_path.is_file():
            try:
                journal = json.loads(journal_path.read_text(encoding="utf-8"))
            except ValueError:  # torn journal: the publish never started
                shutil.rmtree(staging, ignore_errors=True)
                continue
            _apply(root, staging, journal)
            done.append(staging.name)
        else:
            shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):
        staging_root.rmdir()
    return done


class RunTransaction:
    """The staged changes of one stage; use through :meth:`audit.rundir.RunDir.transaction`.

    Attributes
    ----------
    root : Path
        The published run directory.
    staging : Path
        Where the stage writes its new artifacts (same layout as the run directory).
    """

    def __init__(self, root: Path, stage: str) -> None:
        self.root = root
        self.stage = stage
        self.staging = root / STAGING_DIR / f"{stage.replace(' ', '-')}-{uuid.uuid4().hex[:12]}"
        self.staging.mkdir(parents=True)
        self._remove: list[str] = []
        self._run_json: dict[str, Any] | None = None
        self._drop_sections: set[str] = set()
        self._replace_run_json = False

    def remove(self, names: Iterable[str]) -> None:
        """Paths (relative to the run directory) to delete when publishing, if present."""
        self._remove.extend(str(n) for n in names)

    def update_run_json(self, updates: Mapping[str, Any], *, drop: Iterable[str] = (),
                        replace: bool = False) -> None:
        """Sections of ``run.json`` to set, and sections to drop, at publish time.

        Parameters
        ----------
        updates : mapping
            Top-level keys to set.
        drop : iterable of str
            Top-level keys to remove (sections of stages made stale by this one).
        replace : bool
            Start from an empty ``run.json`` instead of the published one.
        """
        self._run_json = {**(self._run_json or {}), **dict(updates)}
        self._drop_sections |= set(drop)
        self._replace_run_json = self._replace_run_json or replace

    def commit(self, read_run_json: Any, write_json: Any) -> None:
        """Publish: write the journal, then apply it (see the module docstring)."""
        if self._run_json is not None or self._drop_sections:
            data = {} if self._replace_run_json else dict(read_run_json())
            for k in self._drop_sections:
                data.pop(k, None)
            data.update(self._run_json or {})
            write_json(self.staging / "run.json", data)
        moves = sorted(
            p.relative_to(self.staging).as_posix()
            for p in self.staging.rglob("*")
            if (p.is_file() or p.is_symlink()) and p.name != JOURNAL
        )
        moved = set(moves)
        removes = [r for r in dict.fromkeys(self._remove) if r not in moved]
        journal = {"stage": self.stage, "move": moves, "remove": removes}
        tmp = self.staging / (JOURNAL + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(journal, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.staging / JOURNAL)
        _fsync_dir(self.staging)
        _apply(self.root, self.staging, journal)

    def abort(self) -> None:
        """Discard everything staged (the published run is untouched)."""
        _discard(self.staging)
