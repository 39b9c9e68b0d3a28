"""A stage killed at a random point leaves the old complete state or the new one; a rerun completes.

Each case starts a real ``medaudit`` process on a run directory that already holds a
complete older state, kills it with SIGKILL after a random delay, and then checks
the run directory (after the recovery every medaudit writer performs on entry).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.transaction import recover

ROOT = Path(__file__).resolve().parents[2]
KEY = "kill-test-key-0123456789abcdef0123456789"
#: Contract artifacts compared between states (run.json is compared by its stage keys).
ARTIFACTS = ("manifest.parquet", "quarantine.csv", "images.npy", "image_properties.parquet",
             "findings.json", "oof/pred_probs.npy", "oof/folds.npy", "train/history.json")


def _pngs(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["neg", "pos"][i % 2], "patient_id": f"P{i // 2}"})
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)
    return folder / "m.csv"


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "medaudit", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _state(run: Path) -> dict[str, str]:
    import json

    out = {a: hashlib.sha256((run / a).read_bytes()).hexdigest()
           for a in ARTIFACTS if (run / a).is_file()}
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    out["run.json:ingest"] = str(info.get("ingest", {}).get("cache_key"))
    out["run.json:sections"] = ",".join(sorted(info))
    return out


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MEDAUDIT_SECRET": KEY, "MEDAUDIT_CACHE_DIR": str(tmp_path / "cache"),
            "PYTHONPATH": str(ROOT)}


def _kill_at(proc: subprocess.Popen[bytes], delay: float) -> bool:
    """Kill after ``delay`` s; False when the process had already finished."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


@pytest.mark.slow
def test_killed_ingest_overwrite_leaves_old_or_new(tmp_path: Path, env: dict[str, str]) -> None:
    old_csv, new_csv = _pngs(tmp_path / "old", 30, 0), _pngs(tmp_path / "new", 160, 1)
    common = ["--image-size", "32", "--no-cache"]
    # reference states: old, and new from an uninterrupted run
    ref_new = tmp_path / "ref"
    assert _cli("ingest", "--manifest", str(new_csv), "--out", str(ref_new), *common, env=env).wait() == 0
    t0 = time.perf_counter()
    assert _cli("ingest", "--manifest", str(new_csv), "--out", str(tmp_path / "timing"), *common,
                env=env).wait() == 0
    duration = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    kills = 0
    for k in range(4):
        run = tmp_path / f"run{k}"
        assert _cli("ingest", "--manifest", str(old_csv), "--out", str(run), *common, env=env).wait() == 0
        old = _state(run)
        proc = _cli("ingest", "--manifest", str(new_csv), "--out", str(run), "--overwrite", *common,
                    env=env)
        kills += _kill_at(proc, float(rng.uniform(0.3, 1.0)) * duration)
        recover(run)
        state = _state(run)
        new = _state(ref_new)
        assert state == old or {a: v for a, v in state.items() if a != "run.json:ingest"} == \
            {a: v for a, v in new.items() if a != "run.json:ingest"}, k
        rerun = _cli("ingest", "--manifest", str(new_csv), "--out", str(run), "--overwrite", *common,
                     env=env)
        assert rerun.wait() == 0
    assert kills >= 2  # most cases really were killed mid-way


@pytest.mark.slow
def test_killed_audit_leaves_old_or_new_findings(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.conftest import build_tiny_run

    run = build_tiny_run(tmp_path / "run", n=400, size=16)
    y = run.read_manifest()["label"].to_numpy()
    p1 = np.clip(0.2 + 0.6 * y + np.random.default_rng(0).normal(0, 0.1, len(y)), 0.01, 0.99)
    run.write_array("oof/pred_probs", np.c_[1 - p1, p1].astype(np.float32))
    assert _cli("audit", str(run.path), "--checks", "label_issues", env=env).wait() == 0
    old = _state(run.path)
    t0 = time.perf_counter()
    # the "new" audit runs several checks (not every check: the transaction, not the checks'
    # cost, is under test, and the shortcut checks' permutation nulls would dominate)
    several = ["--checks", "label_issues,class_balance_and_size,outliers,duplicates_and_leakage"]
    assert _cli("audit", str(tmp_path / "run"), *several, env=env).wait() == 0
    duration = time.perf_counter() - t0
    new = _state(run.path)
    assert new != old
    rng = np.random.default_rng(1)
    for _ in range(3):
        assert _cli("audit", str(run.path), "--checks", "label_issues", env=env).wait() == 0
        proc = _cli("audit", str(run.path), *several, env=env)
        _kill_at(proc, float(rng.uniform(0.3, 1.0)) * duration)
        recover(run.path)
        assert _state(run.path) in (old, new)
    assert _cli("audit", str(run.path), *several, env=env).wait() == 0
    assert _state(run.path) == new


@pytest.mark.slow
def test_killed_retrain_leaves_old_outputs_and_resumes(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.conftest import build_tiny_run

    tiny = ["--model", "test_resnet", "--folds", "3", "--epochs", "2", "--batch-size", "32",
            "--threads", "1"]
    build_tiny_run(tmp_path / "ref", n=120, size=16)
    t0 = time.perf_counter()
    assert _cli("train", str(tmp_path / "ref"), *tiny, "--seed", "1", env=env).wait() == 0
    duration = time.perf_counter() - t0
    ref = _train_state(tmp_path / "ref")
    run = build_tiny_run(tmp_path / "run", n=120, size=16).path
    assert _cli("train", str(run), *tiny, "--seed", "0", env=env).wait() == 0
    old = _train_state(run)
    rng = np.random.default_rng(2)
    for _ in range(2):
        proc = _cli("train", str(run), *tiny, "--seed", "1", env=env)
        _kill_at(proc, float(rng.uniform(0.4, 0.9)) * duration)
        recover(run)
        assert _train_state(run) in (old, ref)
    assert _cli("train", str(run), *tiny, "--seed", "1", env=env).wait() == 0
    assert _train_state(run) == ref  # resumed, bitwise the same as an uninterrupted run


def _digest(path: Path) -> str:
    """Digest of a checkpoint's tensors (torch.save's zip embeds the temporary file name)."""
    import torch

    state = torch.load(path, weights_only=True)
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].numpy().tobytes())
    return h.hexdigest()


def _train_state(run: Path) -> dict[str, str]:
    state = {k: v for k, v in _state(run).items() if k != "train/history.json"}  # has timings
    return state | {"ckpt": _digest(run / "train" / "fold_2.pt")}
