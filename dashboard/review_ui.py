"""Review buttons and notes shared by the label-issue and duplicate pages; pagination."""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from audit.reviews import DECISIONS, ReviewStore, ReviewStoreBusyError
from dashboard.state import PageContext

__all__ = ["flash", "paginate", "review_controls"]

_MSG = "_review_message"


def _widget_key(*parts: str) -> str:
    """A short widget key from parts that may hold any character (sample ids)."""
    return "rv-" + hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()


def _decide(
    path: str,
    fingerprint: str,
    kind: str,
    item: str,
    decision: str,
    note_key: str,
    corrected_label: str | None,
) -> None:
    reviewer = str(st.session_state.get("reviewer") or "").strip()
    if not reviewer:
        st.session_state[_MSG] = (
            "warning",
            "Enter your name in the sidebar first: every "
            "decision is recorded with the reviewer's name.",
        )
        return
    note = str(st.session_state.get(note_key) or "")
    try:
        ReviewStore(path, fingerprint).record(
            kind,
            item,
            decision,
            reviewer=reviewer,
            note=note,  # type: ignore[arg-type]
            corrected_label=corrected_label if decision == "confirm_error" else None,
        )
    except (ValueError, ReviewStoreBusyError) as err:
        st.session_state[_MSG] = ("error", f"Not recorded: {err}")
        return
    st.session_state[_MSG] = (
        "success",
        f"Recorded “{DECISIONS[kind][decision]}” for {item} by {reviewer}.",
    )


def flash() -> None:
    """Show (once) the outcome of the last review click."""
    msg = st.session_state.pop(_MSG, None)
    if msg is not None:
        getattr(st, msg[0])(msg[1])


def review_controls(
    ctx: PageContext,
    kind: str,
    item: str,
    current: str | None,
    *,
    corrected_label: str | None = None,
) -> None:
    """The decision buttons of one item, its current decision and a note field."""
    words = DECISIONS[kind]
    note_key = _widget_key("note", kind, item)
    st.text_input(
        "Note",
        key=note_key,
        placeholder="optional note",
        max_chars=2000,
        label_visibility="collapsed",
    )
    for decision, label in words.items():  # stacked: the words stay whole in narrow cards
        st.button(
            label,
            key=_widget_key(kind, item, decision),
            width="stretch",
            type="primary" if current == decision else "secondary",
            on_click=_decide,
            args=(str(ctx.path), ctx.fingerprint, kind, item, decision, note_key, corrected_label),
        )
    st.caption(
        f"Current decision: **{words[current]}** (highlighted)" if current else "Not reviewed yet"
    )


def paginate(n: int, *, key: str, sizes: tuple[int, ...] = (12, 24, 48)) -> tuple[int, int]:
    """Page-size and page-number controls; returns ``(start, stop)`` of the rows shown."""
    c1, c2, c3 = st.columns([1, 1, 3])
    size = int(c1.selectbox("Per page", sizes, key=f"{key}-size"))
    pages = max(1, -(-n // size))
    page_key = f"{key}-page"
    if int(st.session_state.get(page_key, 1)) > pages:
        st.session_state[page_key] = 1
    page = int(
        c2.number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key=page_key)
    )
    start = (page - 1) * size
    stop = min(n, start + size)
    c3.caption(f"Showing {start + 1 if n else 0}–{stop} of {n:,}")
    return start, stop


def chunks(items: list[Any], n: int) -> list[list[Any]]:
    """``items`` in rows of ``n``."""
    return [items[i : i + n] for i in range(0, len(items), n)]
