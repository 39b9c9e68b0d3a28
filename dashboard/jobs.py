"""Background audits started from the New-audit page: ``medaudit run`` in its own process.

A job writes its run directory into the runs folder the dashboard was started with,
its log and status under ``<runs folder>/.medaudit-jobs/`` (a dot folder, never listed
as a run). The inputs are paths the UI picked from :class:`dashboard.paths.DataRoot`
listings, resolved and checked there; the run name passes
:func:`dashboard.paths.safe_run_name`. The process outlives page reloads (its own
session); the page follows it through the log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.paths import PathNotAllowedError, safe_run_name

__all__ = ["JOBS_DIR", "PRESETS", "Job", "list_jobs", "start_job"]

JOBS_DIR = ".medaudit-jobs"
#: Flags of ``medaudit run`` per preset, with what each means.
PRESETS: dict[str, tuple[list[str], str]] = {
    "quick": (
        ["--folds", "3", "--epochs", "5", "--image-size", "64"],
        "3 folds x 5 epochs at 64 px: minutes on a laptop; a first look, not a final audit",
    ),
    "standard": (
        [],
        "medaudit's defaults (5 folds, full training schedule): the audit to "
        "report; can take an hour or more on a CPU",
    ),
}
#: Log lines that mark the stages, in order.
STAGES: tuple[tuple[str, str], ...] = (
    ("ingest", "accepted"),
    ("train", "fold"),
    ("audit", "finding"),
    ("report", "report ("),
    ("done", "run directory:"),
)


@dataclass
class Job:
    """One background audit."""

    name: str
    out: Path
    log: Path
    status_file: Path
    pid: int
    started_at: float
    returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once finished, else None (recorded in the status file)."""
        if self.returncode is not None:
            return self.returncode
        proc = _PROCS.get(self.name)
        if proc is not None:
            rc = proc.poll()
        else:  # started by an earlier server process
            rc = None if _alive(self.pid) else -1
        if rc is not None:
            self.returncode = rc
            _write_status(self)
        return rc

    def tail(self, n: int = 25) -> str:
        """The last ``n`` lines of the log."""
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stage(self) -> str:
        """The last stage the log has reached."""
        text = self.tail(10_000).lower()
        reached = "starting"
        for stage, marker in STAGES:
            if marker in text:
                reached = stage
        return reached


_PROCS: dict[str, subprocess.Popen[bytes]] = {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _write_status(job: Job) -> None:
    job.status_file.write_text(
        json.dumps(
            {
                "name": job.name,
                "out": str(job.out),
                "log": str(job.log),
                "pid": job.pid,
                "started_at": job.started_at,
                "returncode": job.returncode,
            }
        ),
        encoding="utf-8",
    )


def start_job(
    runs_folder: Path,
    name: str,
    *,
    preset: str,
    manifest: Path | None = None,
    dicom_dir: Path | None = None,
    labels: Path | None = None,
) -> Job:
    """Start ``medaudit run`` into ``runs_folder / name`` in the background.

    Parameters
    ----------
    runs_folder : Path
        The folder of runs the dashboard was started with.
    name : str
        The new run's name (:func:`dashboard.paths.safe_run_name`); must not exist.
    preset : {'quick', 'standard'}
    manifest, dicom_dir, labels : Path, optional
        Inputs already resolved under the data root: a manifest, or a DICOM folder with
        its labels CSV.

    Raises
    ------
    ValueError
        For an unknown preset, a taken name or a missing input.
    """
    name = safe_run_name(name)
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}; got {preset!r}")
    out = runs_folder / name
    if out.exists():
        raise PathNotAllowedError(f"a run named {name!r} already exists; choose another name")
    if manifest is not None:
        source = ["--manifest", str(manifest)]
    elif dicom_dir is not None and labels is not None:
        source = ["--dicom-dir", str(dicom_dir), "--labels", str(labels)]
    else:
        raise ValueError("give a manifest CSV, or a DICOM folder and its labels CSV")
    jobs = runs_folder / JOBS_DIR
    jobs.mkdir(exist_ok=True)
    log = jobs / f"{name}.log"
    cmd = [sys.executable, "-m", "medaudit", "run", *source, "--out", str(out), *PRESETS[preset][0]]
    with open(log, "wb") as fh:
        fh.write(("$ medaudit " + " ".join(cmd[3:]) + "\n").encode())
        fh.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    _PROCS[name] = proc
    job = Job(name, out, log, jobs / f"{name}.json", proc.pid, time.time())
    _write_status(job)
    return job


def list_jobs(runs_folder: Path) -> list[Job]:
    """The jobs recorded in the runs folder, newest first."""
    jobs = runs_folder / JOBS_DIR
    out = []
    for f in sorted(jobs.glob("*.json")) if jobs.is_dir() else []:
        try:
            d: dict[str, Any] = json.loads(f.read_text(encoding="utf-8"))
            name = safe_run_name(str(d["name"]))  # paths derived here, never read from the file
            out.append(
                Job(
                    name,
                    runs_folder / name,
                    jobs / f"{name}.log",
                    f,
                    int(d["pid"]),
                    float(d["started_at"]),
                    d.get("returncode"),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda j: -j.started_at)
