"""The writer lock and staged publishing of a run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.rundir import RunDir
from audit.transaction import JOURNAL, STAGING_DIR, RunDirBusyError, recover

HOLD = """
import sys, time
from audit.transaction import writer_lock
with writer_lock(sys.argv[1], "medaudit train"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _manifest(n: int, tag: str = "a") -> pd.DataFrame:
    return pd.DataFrame({"sample_id": [f"{tag}{i}" for i in range(n)], "label": [i % 2 for i in range(n)],
                         "label_name": [["x", "y"][i % 2] for i in range(n)],
                         "patient_key": [f"p{i}" for i in range(n)]})


@pytest.fixture
def holder(tmp_path: Path):
    procs = []

    def start(path: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                                text=True, cwd=Path(__file__).resolve().parents[2])
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_second_writer_fails_at_once_naming_the_holder(tmp_path: Path, holder) -> None:
    proc = holder(tmp_path / "run")
    t0 = time.perf_counter()
    with pytest.raises(RunDirBusyError, match=rf"medaudit train, pid {proc.pid} on .* started 20"):
        with RunDir(tmp_path / "run").transaction("medaudit audit"):
            pass
    assert time.perf_counter() - t0 < 5  # at once, not after waiting


def test_lock_of_a_killed_process_is_recovered(tmp_path: Path, holder) -> None:
    proc = holder(tmp_path / "run")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunDir(tmp_path / "run").transaction("medaudit ingest") as staged:
        staged.write_manifest(_manifest(4))
    assert RunDir(tmp_path / "run").n_samples() == 4


def test_failure_inside_a_transaction_leaves_the_old_state(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.transaction("ingest") as staged:
        staged.write_manifest(_manifest(4))
        staged.update_run_json({"classes": ["x", "y"], "ingest": {"n": 4}})
    with pytest.raises(KeyError), run.transaction("ingest --overwrite") as staged:
        staged.remove(["manifest.parquet", "oof"])
        staged.write_manifest(_manifest(6, "b"))
        staged.update_run_json({"ingest": {"n": 6}}, drop=["train"])
        raise KeyError("decoding failed")
    assert run.read_manifest()["sample_id"].tolist() == ["a0", "a1", "a2", "a3"]
    assert run.read_run_json() == {"classes": ["x", "y"], "ingest": {"n": 4}}
    assert not (tmp_path / "run" / STAGING_DIR).exists()


def test_staged_view_reads_through_and_publishes_together(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.transaction("ingest") as staged:
        staged.write_manifest(_manifest(4))
        staged.update_run_json({"classes": ["x", "y"]})
    run.write_array("oof/pred_probs", np.full((4, 2), 0.5, np.float32))
    run.update_run_json({"train": {"seed": 0}})
    with run.transaction("train") as staged:
        assert staged.class_names() == ["x", "y"]           # read through
        assert staged.has("oof/pred_probs")
        staged.remove(["oof", "findings.json"])
        assert not staged.has("oof/pred_probs")             # scheduled for removal
        staged.write_array("oof/folds", np.zeros(4, np.int16))
        staged.update_run_json({"train": {"seed": 7}}, drop=["audit"])
        assert not run.has("oof/folds")                     # nothing published yet
        assert run.read_run_json()["train"] == {"seed": 0}
    assert run.has("oof/folds") and not run.has("oof/pred_probs")
    assert run.read_run_json()["train"] == {"seed": 7}


def test_an_interrupted_publish_is_rolled_forward(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.transaction("ingest") as staged:
        staged.write_manifest(_manifest(4))
        staged.write_array("oof/folds", np.zeros(4, np.int16))
    # a publish that was killed after its journal was written and one file moved
    staging = tmp_path / "run" / STAGING_DIR / "ingest-dead"
    (staging / "oof").mkdir(parents=True)
    _manifest(6, "b").to_parquet(tmp_path / "run" / "manifest.parquet", index=False)  # moved
    np.save(staging / "oof" / "folds.npy", np.ones(6, np.int16))                   # not yet
    (staging / JOURNAL).write_text(json.dumps({"move": ["manifest.parquet", "oof/folds.npy"],
                                               "remove": ["findings.json"]}))
    assert recover(tmp_path / "run") == ["ingest-dead"]
    assert run.n_samples() == 6 and run.read_array("oof/folds").tolist() == [1] * 6
    # an abandoned staging folder without a journal is discarded
    (tmp_path / "run" / STAGING_DIR / "train-dead").mkdir(parents=True)
    with run.transaction("audit"):
        pass
    assert not (tmp_path / "run" / STAGING_DIR).exists()


def test_a_run_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        with RunDir(tmp_path / "f").transaction("ingest"):
            pass
