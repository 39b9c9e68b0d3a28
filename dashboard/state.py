"""Cached loaders and the per-session context the pages receive.

Every loader is keyed by the run path and :func:`dashboard.data.run_stamp` (the
modification times of ``manifest.parquet``, ``run.json`` and ``findings.json``), so
a re-audit shows up on the next interaction while nothing is recomputed between
clicks. Large objects (the report model, per-sample tables, the memory-mapped image
cache) are cached as shared resources and never mutated by the pages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from audit.reviews import ReviewStore
from audit.rundir import RunDir
from dashboard import data
from dashboard.paths import DataRoot, RunCatalog
from reports.model import Report

__all__ = [
    "ENV_DATA_ROOT",
    "ENV_RUNS",
    "PageContext",
    "cached_check_table",
    "cached_images",
    "cached_thumbnail",
]

ENV_RUNS = "MEDAUDIT_DASHBOARD_RUNS"
ENV_DATA_ROOT = "MEDAUDIT_DASHBOARD_DATA_ROOT"


@st.cache_resource(
    max_entries=8,
    show_spinner="Building the model card (performance with "
    "bootstrap intervals; a minute or more on large runs, once)…",
)
def cached_report(path: str, stamp: tuple[float, ...]) -> Report:
    """:func:`dashboard.data.load_report` (every section), once per run state."""
    return data.load_report(path)


@st.cache_resource(max_entries=8, show_spinner="Reading the run's findings…")
def cached_findings(path: str, stamp: tuple[float, ...]) -> Report:
    """The light report model (summary, datasheet, findings), once per run state."""
    return data.load_report(path, light=True)


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_run(path: str, stamp: tuple[float, ...]) -> tuple[dict[str, Any], pd.DataFrame, str]:
    """``(run.json, manifest, data fingerprint)``."""
    run = RunDir(Path(path))
    manifest = run.read_manifest()
    from audit.consistency import data_fingerprint

    return run.read_run_json(), manifest, data_fingerprint(run, manifest)


@st.cache_resource(
    max_entries=16,
    show_spinner="Computing the check's full per-sample table with the audit's recorded settings…",
)
def cached_check_table(path: str, stamp: tuple[float, ...], check: str) -> data.TableResult:
    """:func:`dashboard.data.check_table`, once per run state."""
    return data.check_table(path, check)


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_images(path: str, stamp: tuple[float, ...]) -> np.ndarray | None:
    """The memory-mapped image cache (no copy in memory)."""
    return data.images(path)


@st.cache_data(max_entries=4000, show_spinner=False)
def cached_thumbnail(
    path: str, stamp: tuple[float, ...], row: int, max_px: int = 160, variant: str | None = None
) -> bytes | None:
    """PNG of one cache image (or a masked variant), downscaled."""
    cache = cached_images(path, stamp)
    if cache is None or not 0 <= row < len(cache):
        return None
    return data.thumbnail(cache, row, max_px=max_px, variant=variant)


@st.cache_resource(show_spinner=False)
def catalog(root: str) -> RunCatalog:
    """The runs the app was started with."""
    return RunCatalog(root)


@dataclass
class PageContext:
    """What a page needs: the chosen run, its report model, the review store, the reviewer."""

    catalog: RunCatalog
    data_root: DataRoot | None
    run_name: str
    path: Path
    stamp: tuple[float, ...]
    info: dict[str, Any]
    manifest: pd.DataFrame
    fingerprint: str
    reviewer: str

    @property
    def key(self) -> str:
        """The run path as a cache key."""
        return str(self.path)

    @property
    def report(self) -> Report:
        """The whole report model, model card included (built on first use)."""
        return cached_report(self.key, self.stamp)

    @property
    def light(self) -> Report:
        """Summary, datasheet and findings of the report model (fast; no model card)."""
        return cached_findings(self.key, self.stamp)

    @property
    def store(self) -> ReviewStore:
        """The run's review store, limited to its data fingerprint."""
        return ReviewStore(self.path, self.fingerprint)

    @property
    def row_of(self) -> dict[str, int]:
        """``{sample_id: row}`` of the manifest."""
        k = "_row_of::" + self.key + str(self.stamp)
        if k not in st.session_state:
            st.session_state[k] = {
                s: i for i, s in enumerate(self.manifest["sample_id"].astype(str))
            }
        return st.session_state[k]

    def thumbnail(self, row: int, *, max_px: int = 160, variant: str | None = None) -> bytes | None:
        """PNG of one cache image."""
        return cached_thumbnail(self.key, self.stamp, int(row), max_px, variant)


def data_root_from_env() -> DataRoot | None:
    """The ``--data-root`` the app was started with, or None."""
    value = os.environ.get(ENV_DATA_ROOT)
    if not value:
        return None
    try:
        return DataRoot(value)
    except FileNotFoundError:
        return None
