"""The review store never loses a decision: append-only trail, two writers, a killed writer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from audit.reviews import REVIEWS_FILE, ReviewStore, pair_key

FP = "0123456789abcdef"


def test_trail_records_previous_decision_and_current_is_latest(tmp_path: Path) -> None:
    store = ReviewStore(tmp_path, FP)
    first = store.record("label_issue", "s1", "unsure", reviewer="Dr A", note="blurry")
    second = store.record(
        "label_issue", "s1", "confirm_error", reviewer="Dr B", corrected_label="class_1"
    )
    store.record("duplicate", pair_key("s9", "s2"), "same_patient", reviewer="Dr A")
    assert first.previous_decision is None and second.previous_decision == "unsure"
    trail = store.trail()
    assert list(trail["decision"]) == ["unsure", "confirm_error", "same_patient"]
    assert list(trail["reviewer"]) == ["Dr A", "Dr B", "Dr A"]
    assert trail["reviewed_at"].str.endswith("+00:00").all()
    assert store.decisions("label_issue") == {"s1": "confirm_error"}
    assert store.decisions("duplicate") == {"s2|s9": "same_patient"}


def test_rows_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    ReviewStore(tmp_path, FP).record("label_issue", "s1", "keep_label", reviewer="A")
    con = sqlite3.connect(tmp_path / REVIEWS_FILE)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE reviews SET decision='unsure'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM reviews")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_reviews_of_other_data_never_show_up(tmp_path: Path) -> None:
    ReviewStore(tmp_path, "aaaaaaaaaaaaaaaa").record(
        "label_issue", "s1", "confirm_error", reviewer="A"
    )
    new = ReviewStore(tmp_path, "bbbbbbbbbbbbbbbb")
    assert new.trail().empty and new.decisions("label_issue") == {}
    assert new.n_other_fingerprints() == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "label_issue", "decision": "delete_everything"},
        {"kind": "nonsense", "decision": "unsure"},
        {"kind": "label_issue", "decision": "unsure", "reviewer": "   "},
        {"kind": "label_issue", "decision": "unsure", "note": "x" * 2001},
    ],
)
def test_bad_input_is_refused_and_nothing_written(tmp_path: Path, bad: dict) -> None:
    kw = {"reviewer": "A", **bad}
    with pytest.raises(ValueError):
        ReviewStore(tmp_path, FP).record(kw.pop("kind"), "s1", kw.pop("decision"), **kw)
    assert ReviewStore(tmp_path, FP).trail().empty


_WRITER = textwrap.dedent("""
    import sys
    from audit.reviews import ReviewStore
    store = ReviewStore(sys.argv[1], "0123456789abcdef")
    who, n = sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    for i in range(n):
        store.record("label_issue", f"s{i % 7}", ("confirm_error", "keep_label", "unsure")[i % 3],
                     reviewer=who, note=f"{who} {i}")
""")


def _writer(run: Path, who: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(run), who, str(n)], stdout=subprocess.PIPE, text=True
    )


def test_two_writers_at_once_both_persist(tmp_path: Path) -> None:
    ReviewStore(tmp_path, FP).trail()  # nothing yet: reading creates nothing
    assert not (tmp_path / REVIEWS_FILE).exists()
    n = 120
    procs = [_writer(tmp_path, who, n) for who in ("alice", "bob")]
    for p in procs:
        assert p.wait(timeout=120) == 0
    trail = ReviewStore(tmp_path, FP).trail()
    assert len(trail) == 2 * n
    for who in ("alice", "bob"):
        notes = trail.loc[trail["reviewer"] == who, "note"]
        assert sorted(notes, key=lambda s: int(s.split()[1])) == [f"{who} {i}" for i in range(n)]
    # every row's previous decision is the decision of the row before it for that item
    for _, rows in trail.groupby("item"):
        assert list(rows["previous_decision"])[1:] == list(rows["decision"])[:-1]


def test_a_writer_killed_mid_write_leaves_a_consistent_database(tmp_path: Path) -> None:
    proc = _writer(tmp_path, "killed", 100_000)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 30
    while time.time() < deadline:  # let it write for a while, then kill it hard
        if (tmp_path / REVIEWS_FILE).exists() and len(ReviewStore(tmp_path, FP).trail()) > 50:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    con = sqlite3.connect(tmp_path / REVIEWS_FILE)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    store = ReviewStore(tmp_path, FP)
    trail = store.trail()
    assert len(trail) > 50
    assert list(trail["note"]) == [f"killed {i}" for i in range(len(trail))]  # no gap, no torn row
    store.record("label_issue", "s0", "unsure", reviewer="after")  # still writable
    assert len(store.trail()) == len(trail) + 1
