"""Page 9, New audit: the no-code path (inputs under ``--data-root`` only, background process)."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from dashboard.jobs import PRESETS, Job, list_jobs, start_job
from dashboard.paths import DataRoot, PathNotAllowedError, RunCatalog
from dashboard.widgets import missing

__all__ = ["render"]


def _open_run(name: str) -> None:
    st.session_state["run"] = name
    st.session_state["page"] = "overview"
    st.session_state["_open_pending"] = True


def render(ctx: Any, *, cat: RunCatalog, data_root: DataRoot | None) -> None:
    """Render the page (``ctx`` may be None when the runs folder holds no run yet)."""
    st.header("New audit")
    st.caption(
        "Audit a dataset without the terminal: pick the images and labels, choose a "
        "preset, and medaudit ingests, trains and audits in the background. The new "
        "run opens here when it is done."
    )
    if data_root is None:
        missing(
            "New audits are not enabled in this dashboard",
            "Start it with a data root, the only folder inputs can be picked from: "
            "`medaudit dashboard RUNS_FOLDER --data-root /path/to/data`.",
        )
        return
    folder = cat.new_runs_folder
    if folder is None:
        missing(
            "The dashboard was started on a single run",
            "New runs are written next to the others: start it on the folder that holds "
            "your runs (`medaudit dashboard RUNS_FOLDER --data-root DIR`).",
        )
        return
    st.markdown(f"Inputs from **{data_root.root}** · new runs go to **{folder}**")
    kind = st.radio(
        "Input", ["Manifest CSV", "DICOM folder and labels CSV"], horizontal=True, key="new-kind"
    )
    csvs = data_root.csv_files()
    src: dict[str, Any] = {}
    if kind == "Manifest CSV":
        pick = st.selectbox(
            "Manifest CSV (path, label and optional metadata columns)",
            csvs,
            key="new-manifest",
            index=None,
            placeholder="choose a CSV file",
        )
        src["manifest"] = pick
    else:
        dirs = data_root.folders()
        src["dicom_dir"] = st.selectbox(
            "DICOM folder", dirs, key="new-dicom", index=None, placeholder="choose a folder"
        )
        src["labels"] = st.selectbox(
            "Labels CSV (label + sop_instance_uid, study_instance_uid or path)",
            csvs,
            key="new-labels",
            index=None,
            placeholder="choose a CSV file",
        )
    name = st.text_input(
        "Name of the new run",
        value=time.strftime("audit-%Y%m%d-%H%M"),
        key="new-name",
        max_chars=64,
    )
    preset = st.radio(
        "Preset",
        list(PRESETS),
        horizontal=True,
        key="new-preset",
        captions=[PRESETS[p][1] for p in PRESETS],
    )
    if st.button("Start the audit", type="primary", key="new-start"):
        try:
            paths = {
                k: data_root.resolve(v, kind="dir" if k == "dicom_dir" else "file")
                for k, v in src.items()
                if v
            }
            if not paths or ("dicom_dir" in src and len(paths) < 2):
                raise ValueError("choose the inputs first")
            job = start_job(folder, name, preset=preset, **paths)
        except (PathNotAllowedError, ValueError) as err:
            st.error(str(err))
        else:
            st.success(f"Started {job.name} (process {job.pid}).")
    _jobs(cat)


@st.fragment(run_every=2.0)
def _jobs(cat: RunCatalog) -> None:
    folder = cat.new_runs_folder
    jobs = list_jobs(folder) if folder is not None else []
    if not jobs:
        return
    st.subheader("Audits started here")
    for job in jobs[:10]:
        _job(job, cat)
    if st.session_state.pop("_open_pending", False):
        st.rerun(scope="app")  # a button in a fragment reruns the fragment only


def _job(job: Job, cat: RunCatalog) -> None:
    rc = job.poll()
    elapsed = time.time() - job.started_at
    with st.container(border=True):
        if rc is None:
            st.markdown(
                f":material/hourglass_top: **{job.name}** running · stage **{job.stage()}** · "
                f"{elapsed / 60:.1f} min"
            )
        elif rc in (0, 3):
            st.markdown(
                f":material/check_circle: **{job.name}** finished"
                + (" (with findings at the fail-on level)" if rc == 3 else "")
            )
        else:
            st.markdown(
                f":material/cancel: **{job.name}** stopped with exit code {rc}: see the log"
            )
        st.code(job.tail(12) or "(no output yet)", language=None)
        if rc is not None and job.name in cat.runs():
            st.button(
                f"Open {job.name}", key=f"open-{job.name}", on_click=_open_run, args=(job.name,)
            )
