"""Review decisions of a run: ``reviews.sqlite`` in the run directory, an append-only trail.

Every decision a reviewer records (confirm a label error, keep the label, mark a pair
as the same patient ...) is one new row: reviewer, UTC timestamp, decision, note and
the decision it replaces. Rows are never updated or deleted (SQLite triggers refuse
it), so the table is the audit trail and the current decision of an item is its
latest row.

Every row carries the run's data fingerprint (:func:`audit.consistency.data_fingerprint`):
after a re-ingest of other data into the same directory, the reviews of the old data
stay in the file but never show up, nor are they exported.

Durability: the database runs in WAL mode with ``synchronous=FULL``; each decision
is one ``BEGIN IMMEDIATE`` transaction (read the previous decision, insert the new
row), retried with backoff while another session holds the write lock. A process
killed mid-write loses at most the decision it was writing; the database stays
consistent (SQLite's journal rolls the half-written transaction back).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import pandas as pd

__all__ = [
    "DECISIONS",
    "REVIEWS_FILE",
    "Review",
    "ReviewKind",
    "ReviewStore",
    "ReviewStoreBusyError",
    "pair_key",
]

#: File name of the review store inside a run directory.
REVIEWS_FILE = "reviews.sqlite"
#: Schema version written to the ``meta`` table.
SCHEMA_VERSION = 1

ReviewKind = Literal["label_issue", "duplicate"]
#: The decisions of each kind of item, with the words the dashboard shows.
DECISIONS: dict[str, dict[str, str]] = {
    "label_issue": {
        "confirm_error": "Confirm error",
        "keep_label": "Keep label",
        "unsure": "Unsure",
    },
    "duplicate": {
        "same_patient": "Same patient",
        "different_patients": "Different patients",
        "not_duplicate": "Not a duplicate",
    },
}
#: Longest reviewer name and note kept (characters).
MAX_REVIEWER = 80
MAX_NOTE = 2000
#: Attempts and first back-off (seconds) while another writer holds the lock.
RETRIES = 40
BACKOFF_S = 0.02

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    data_fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,
    item TEXT NOT NULL,
    decision TEXT NOT NULL,
    previous_decision TEXT,
    reviewer TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    corrected_label TEXT,
    reviewed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_item ON reviews (data_fingerprint, kind, item, id);
CREATE TRIGGER IF NOT EXISTS reviews_no_update BEFORE UPDATE ON reviews
BEGIN SELECT RAISE(ABORT, 'reviews are append-only: rows cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS reviews_no_delete BEFORE DELETE ON reviews
BEGIN SELECT RAISE(ABORT, 'reviews are append-only: rows cannot be deleted'); END;
"""
_COLUMNS = (
    "id",
    "data_fingerprint",
    "kind",
    "item",
    "decision",
    "previous_decision",
    "reviewer",
    "note",
    "corrected_label",
    "reviewed_at",
)


class ReviewStoreBusyError(RuntimeError):
    """Another session held the write lock through every retry."""


def pair_key(a: str, b: str) -> str:
    """The item key of a pair of sample ids, independent of their order (``a|b`` sorted)."""
    x, y = sorted((str(a), str(b)))
    return f"{x}|{y}"


@dataclass(frozen=True)
class Review:
    """One row of the trail."""

    id: int
    data_fingerprint: str
    kind: str
    item: str
    decision: str
    previous_decision: str | None
    reviewer: str
    note: str
    corrected_label: str | None
    reviewed_at: str


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


class ReviewStore:
    """The review decisions of one run directory, for one data fingerprint.

    Parameters
    ----------
    run_dir : path-like
        The run directory; ``reviews.sqlite`` is created in it on the first write.
    data_fingerprint : str
        The fingerprint of the run's data (16 hex digits); reads and writes are
        limited to it.
    """

    def __init__(self, run_dir: str | os.PathLike[str], data_fingerprint: str) -> None:
        if not data_fingerprint:
            raise ValueError("data_fingerprint must be a non-empty string")
        self.path = Path(run_dir) / REVIEWS_FILE
        self.fingerprint = str(data_fingerprint)

    # -- connection ---------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=0.5, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA busy_timeout=500")
            yield con
        finally:
            con.close()

    def _retry(self, fn: Any) -> Any:
        delay = BACKOFF_S
        for attempt in range(RETRIES):
            try:
                with self._connect() as con:
                    return fn(con)
            except sqlite3.OperationalError as err:
                if not _is_busy(err) or attempt == RETRIES - 1:
                    if _is_busy(err):
                        raise ReviewStoreBusyError(
                            f"{self.path} stayed locked by another writer through {RETRIES} "
                            "attempts; try again"
                        ) from err
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 1.5, 0.5)
        raise AssertionError("unreachable")  # pragma: no cover

    def _ensure(self, con: sqlite3.Connection) -> None:
        con.executescript(_SCHEMA)
        con.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    # -- writing ------------------------------------------------------------------------
    def record(
        self,
        kind: ReviewKind,
        item: str,
        decision: str,
        *,
        reviewer: str,
        note: str = "",
        corrected_label: str | None = None,
    ) -> Review:
        """Append a decision (one transaction) and return the row written.

        Parameters
        ----------
        kind : {'label_issue', 'duplicate'}
        item : str
            A sample id (label issues) or :func:`pair_key` (duplicates).
        decision : str
            One of :data:`DECISIONS` ``[kind]``.
        reviewer : str
            Who decides (1 to :data:`MAX_REVIEWER` characters).
        note : str
            Free text (at most :data:`MAX_NOTE` characters).
        corrected_label : str, optional
            The label the item should have (a confirmed label error).

        Raises
        ------
        ValueError
            For an unknown kind or decision, an empty reviewer, an over-long note.
        ReviewStoreBusyError
            When the write lock stayed taken through every retry.
        """
        if kind not in DECISIONS:
            raise ValueError(f"kind must be one of {list(DECISIONS)}; got {kind!r}")
        if decision not in DECISIONS[kind]:
            raise ValueError(
                f"decision for {kind} must be one of {list(DECISIONS[kind])}; got {decision!r}"
            )
        reviewer = " ".join(str(reviewer).split())
        if not reviewer or len(reviewer) > MAX_REVIEWER:
            raise ValueError(f"reviewer must be 1 to {MAX_REVIEWER} characters; got {reviewer!r}")
        note = str(note or "").strip()
        if len(note) > MAX_NOTE:
            raise ValueError(f"note must be at most {MAX_NOTE} characters; got {len(note)}")
        if not str(item):
            raise ValueError("item must be a non-empty sample id or pair key")
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")

        def write(con: sqlite3.Connection) -> Review:
            self._ensure(con)
            con.execute("BEGIN IMMEDIATE")
            try:
                prev = con.execute(
                    "SELECT decision FROM reviews WHERE data_fingerprint=? AND kind=? AND item=? "
                    "ORDER BY id DESC LIMIT 1",
                    (self.fingerprint, kind, str(item)),
                ).fetchone()
                # the row's values in Review's field order (after its id)
                values = (self.fingerprint, kind, str(item), decision,
                          prev[0] if prev else None, reviewer, note, corrected_label, stamp)
                cur = con.execute(
                    "INSERT INTO reviews (data_fingerprint, kind, item, decision, "
                    "previous_decision, reviewer, note, corrected_label, reviewed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return Review(int(cur.lastrowid or 0), *values)

        return self._retry(write)

    # -- reading ------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []

        def read(con: sqlite3.Connection) -> list[tuple[Any, ...]]:
            has = con.execute("SELECT name FROM sqlite_master WHERE name='reviews'").fetchone()
            return con.execute(sql, params).fetchall() if has else []

        return self._retry(read)

    def trail(self, kind: ReviewKind | None = None) -> pd.DataFrame:
        """Every row of this fingerprint, oldest first (the audit trail)."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM reviews WHERE data_fingerprint=?"
        params: tuple[Any, ...] = (self.fingerprint,)
        if kind is not None:
            sql += " AND kind=?"
            params += (kind,)
        return pd.DataFrame(self._query(sql + " ORDER BY id", params), columns=list(_COLUMNS))

    def current(self, kind: ReviewKind | None = None) -> pd.DataFrame:
        """The latest decision of every item of this fingerprint (one row per item)."""
        sql = (
            f"SELECT {', '.join(_COLUMNS)} FROM reviews WHERE id IN (SELECT MAX(id) FROM "
            "reviews WHERE data_fingerprint=? GROUP BY kind, item)"
        )
        params: tuple[Any, ...] = (self.fingerprint,)
        if kind is not None:
            sql += " AND kind=?"
            params += (kind,)
        return pd.DataFrame(self._query(sql + " ORDER BY id", params), columns=list(_COLUMNS))

    def decisions(self, kind: ReviewKind) -> Mapping[str, str]:
        """``{item: current decision}`` of one kind."""
        cur = self.current(kind)
        return dict(zip(cur["item"], cur["decision"]))

    def n_other_fingerprints(self) -> int:
        """Rows recorded for other data in this directory (hidden here; after a re-ingest)."""
        rows = self._query(
            "SELECT COUNT(*) FROM reviews WHERE data_fingerprint<>?", (self.fingerprint,)
        )
        return int(rows[0][0]) if rows else 0
