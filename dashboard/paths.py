"""The only places the dashboard touches on disk: the runs it was started with, the data root.

Input from the browser is untrusted. The app never joins a string from the UI to a
path: it lists what is allowed (the run directories under the folder it was started
with; the files under ``--data-root``) and the UI picks one entry of that list by
its name. :meth:`RunCatalog.resolve` and :meth:`DataRoot.resolve` refuse anything
else (``..``, absolute paths, symlinks that leave the root), so a crafted query
parameter or widget value cannot reach another directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from audit.rundir import MANIFEST

__all__ = ["DataRoot", "PathNotAllowedError", "RunCatalog", "is_run_dir", "safe_run_name"]

#: Depth below the folder searched for run directories.
MAX_DEPTH = 2
#: Most entries listed (runs or data files).
MAX_LISTED = 500
#: A new run's name: letters, digits, ``-``, ``_``, ``.`` (not first), at most 64.
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class PathNotAllowedError(ValueError):
    """A path or name from the UI that is not one the app may open."""


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is an ingested run directory (holds ``manifest.parquet``)."""
    return (path / MANIFEST).is_file()


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def safe_run_name(name: str) -> str:
    """``name`` when it is a valid new run name (see :data:`RUN_NAME`), else ``ValueError``."""
    name = str(name).strip()
    if not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise PathNotAllowedError(
            f"run name must be 1-64 letters, digits, '-', '_' or '.' (not first); got {name!r}"
        )
    return name


@dataclass
class RunCatalog:
    """The run directories the app was started with.

    Parameters
    ----------
    root : path-like
        A run directory (the app shows that run only) or a folder (the app lists the
        run directories up to :data:`MAX_DEPTH` levels under it).
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"{root} is not a directory; give a run directory or a folder of run directories"
            )

    @property
    def single(self) -> bool:
        """Started with one run directory (not a folder of runs)."""
        return is_run_dir(self.root)

    def runs(self) -> dict[str, Path]:
        """``{name: path}`` of the runs, names relative to the folder (sorted)."""
        if self.single:
            return {self.root.name: self.root}
        found: dict[str, Path] = {}

        def walk(d: Path, depth: int) -> None:
            try:
                entries = sorted(
                    p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")
                )
            except OSError:
                return
            for p in entries:
                if len(found) >= MAX_LISTED:
                    return
                if not _inside(p, self.root):  # a symlink leaving the folder
                    continue
                if is_run_dir(p):
                    found[p.relative_to(self.root).as_posix()] = p
                elif depth < MAX_DEPTH:
                    walk(p, depth + 1)

        walk(self.root, 1)
        return found

    def resolve(self, name: str) -> Path:
        """The run directory listed under ``name``.

        Raises
        ------
        PathNotAllowedError
            When ``name`` is not one of :meth:`runs` (whatever it looks like).
        """
        runs = self.runs()
        if not isinstance(name, str) or name not in runs:
            raise PathNotAllowedError(f"no run named {name!r} here; choose one of the listed runs")
        path = runs[name]
        if not _inside(path, self.root):  # pragma: no cover - runs() already filters
            raise PathNotAllowedError(f"run {name!r} is outside {self.root}")
        return path

    @property
    def new_runs_folder(self) -> Path | None:
        """Where the New-audit page writes runs: the folder (None when started with one run)."""
        return None if self.single else self.root


@dataclass
class DataRoot:
    """The folder under which the New-audit page may pick inputs (``--data-root``)."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"--data-root {root} is not a directory")

    def _listed(self, *, dirs: bool, suffix: str | None = None) -> list[str]:
        out: list[str] = []
        for cur, dnames, fnames in os.walk(self.root, followlinks=False):
            dnames[:] = sorted(d for d in dnames if not d.startswith("."))
            base = Path(cur)
            names = dnames if dirs else sorted(fnames)
            for n in names:
                p = base / n
                if suffix is not None and not n.lower().endswith(suffix):
                    continue
                if not _inside(p, self.root):
                    continue
                out.append(p.relative_to(self.root).as_posix())
                if len(out) >= MAX_LISTED:
                    return out
        return sorted(out)

    def csv_files(self) -> list[str]:
        """CSV files under the root (relative POSIX paths)."""
        return self._listed(dirs=False, suffix=".csv")

    def folders(self) -> list[str]:
        """Folders under the root (relative POSIX paths), for a DICOM folder."""
        return self._listed(dirs=True)

    def resolve(self, rel: str, *, kind: str = "file") -> Path:
        """The path of a listed entry.

        Parameters
        ----------
        rel : str
            As listed by :meth:`csv_files` or :meth:`folders`.
        kind : {'file', 'dir'}

        Raises
        ------
        PathNotAllowedError
            For an absolute path, ``..``, or anything that resolves outside the root or
            is not a listed entry of that kind.
        """
        if (
            not isinstance(rel, str)
            or not rel
            or Path(rel).is_absolute()
            or ".." in Path(rel).parts
        ):
            raise PathNotAllowedError(f"{rel!r} is not a path under the data root")
        p = self.root / rel
        if not _inside(p, self.root):
            raise PathNotAllowedError(f"{rel!r} leads outside the data root")
        listed = self.folders() if kind == "dir" else self.csv_files()
        if rel not in listed:
            raise PathNotAllowedError(f"{rel!r} is not a listed {kind} under the data root")
        return p.resolve()
