"""The dashboard's pages, one module each, listed in reading order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from audit.rundir import RunArtifactMissingError, RunDirCorruptError, RunDirMismatchError
from dashboard.views import (
    calibration,
    duplicates,
    label_issues,
    new_audit,
    overfitting,
    overview,
    report,
    shortcuts,
    subgroups,
)

__all__ = ["PAGES", "render"]

#: ``(key, label, render function)``; the key is the ``?page=`` of the URL.
PAGES: list[tuple[str, str, Callable[..., None]]] = [
    ("overview", "1 · Overview", overview.render),
    ("label_issues", "2 · Label issues", label_issues.render),
    ("duplicates", "3 · Duplicates and leakage", duplicates.render),
    ("shortcuts", "4 · Shortcuts", shortcuts.render),
    ("subgroups", "5 · Subgroups", subgroups.render),
    ("calibration", "6 · Calibration and prevalence", calibration.render),
    ("overfitting", "7 · Overfitting and drift", overfitting.render),
    ("report", "8 · Report", report.render),
    ("new_audit", "9 · New audit", new_audit.render),
]


def render(page: str, ctx: Any, **kw: Any) -> None:
    """Render page ``page`` (``ctx`` is None on the New-audit page without a run)."""
    fn = {k: f for k, _, f in PAGES}[page]
    if page == "new_audit":
        fn(ctx, **kw)
        return
    try:
        fn(ctx)
    except (RunDirMismatchError, RunDirCorruptError, RunArtifactMissingError) as err:
        # a run being rewritten, or edited by hand: say so instead of a traceback
        st.error(f"This run directory cannot be shown as it is: {err}", icon=":material/error:")
        st.info(
            "If a medaudit command is writing it, wait until it is done and reload; "
            f"otherwise run `medaudit audit {ctx.path}` (or train again) to make it "
            "consistent.",
            icon=":material/info:",
        )
