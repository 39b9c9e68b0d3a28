"""``medaudit predict`` on Ray: blocks of rows scored as tasks give the local executor's arrays.

Ray runs on this machine (``ray.init(num_cpus=2)``) with timm's ``test_resnet``
trained for one epoch on a tiny run. Skipped when ray is not importable, except
the tests of the command line's refusals (which hide ray themselves).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from audit.consistency import verify_run
from audit.rundir import RunDir
from medaudit.cli import main
from tests.conftest import build_tiny_run
from tests.training.ray_support import CFG, arrays, assert_same, cli, local_ray, needs_ray
from training import train_run
from training.deploy import BlockScores, plan_blocks, predict_run
from training.executors import (
    RAY_MISSING,
    BlockFailedError,
    LocalExecutor,
    RayExecutor,
    redact_address,
)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    """One local Ray with 2 CPUs for the module."""
    with local_ray() as ray:
        yield ray


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A tiny run trained with 2 folds x 1 epoch (1 thread)."""
    run = build_tiny_run(tmp_path_factory.mktemp("trained") / "run", n=80)
    train_run(run, CFG.replace(epochs=1))
    return run


def test_blocks_start_on_batch_boundaries_and_cover_every_row() -> None:
    assert plan_blocks(100, 16, 2) == [(0, 64), (64, 100)]
    assert plan_blocks(100, 16, 2, block_rows=40) == [(0, 48), (48, 96), (96, 100)]
    assert plan_blocks(10, 16, 4) == [(0, 10)]
    assert plan_blocks(0, 16, 2) == [(0, 0)]
    blocks = plan_blocks(1001, 32, 7)
    assert blocks[0][0] == 0 and blocks[-1][1] == 1001
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    assert all((stop - start) % 32 == 0 for start, stop in blocks[:-1])


def test_block_scores_join_in_row_order() -> None:
    a = BlockScores(np.zeros((2, 3), np.float32), np.ones((2, 4), np.float32),
                    np.zeros((2, 5, 3), np.float32))
    b = BlockScores(np.full((1, 3), 2, np.float32), np.full((1, 4), 5, np.float32),
                    np.full((1, 5, 3), 7, np.float32))
    joined = BlockScores.concat([a, b])
    assert joined.probs.shape == (3, 3) and joined.embeddings[2, 0] == 5
    # each fold's probabilities (N, F, K): rows first, like every run-directory array
    assert joined.by_fold.shape == (3, 5, 3) and (joined.by_fold[2] == 7).all()
    with pytest.raises(ValueError, match="at least one block"):
        BlockScores.concat([])


def test_a_new_block_output_joins_along_its_row_axis() -> None:
    @dataclasses.dataclass
    class WithFolds(BlockScores):
        by_fold: np.ndarray = dataclasses.field(default=None, metadata={"row_axis": 1})

    def block(m: int, v: float) -> WithFolds:
        return WithFolds(np.full((m, 2), v), np.full((m, 3), v), np.full((4, m, 2), v))

    joined = WithFolds.concat([block(2, 0.0), block(3, 1.0)])
    assert joined.by_fold.shape == (4, 5, 2) and joined.probs.shape == (5, 2)
    assert (joined.by_fold[:, 2:] == 1).all() and (joined.by_fold[:, :2] == 0).all()


def test_addresses_are_recorded_without_credentials() -> None:
    assert redact_address("ray://alice:s3cret@head:10001?token=abc") == "ray://***@head:10001?***"
    assert redact_address("head:6379") == "head:6379"
    assert redact_address("auto") == "auto"
    assert redact_address(None) is None
    record = RayExecutor(address="ray://tok@head:10001").describe()
    assert record["address"] == "ray://***@head:10001" and record["kind"] == "ray"
    assert "tok" not in str(record)


@needs_ray
@pytest.mark.slow
def test_ray_predict_matches_local_bitwise(
    ray_local: object, trained: RunDir, make_tiny_run: Callable[..., RunDir]
) -> None:
    new = make_tiny_run("new", n=100, seed=3)
    local = predict_run(trained, new, batch_size=16, threads=1)
    expected = arrays(new)
    assert local.record["executor"] == {
        "kind": "local",
        "address": None,
        "cpus_per_fold": 1,
        "gpus_per_fold": 0,
        "blocks": 1,
    }
    # three blocks, the last one partial: (0, 48), (48, 96), (96, 100)
    summary = predict_run(
        trained, new, batch_size=16, executor=RayExecutor(cpus_per_fold=1), block_rows=40
    )
    assert_same(arrays(new), expected)
    verify_run(new)  # artifact digests match the published arrays
    rec = summary.record
    assert rec["executor"]["kind"] == "ray" and rec["executor"]["blocks"] == 3
    assert rec["executor"]["cpus_per_fold"] == 1 and rec["executor"]["threads"] == 1
    assert rec["models"] == local.record["models"] and rec["n_rows"] == 100
    assert {k for k in local.record if k not in ("executor",)} <= set(rec)
    # default blocks: one per task slot of the cluster (2 CPUs -> 2 blocks)
    summary = predict_run(trained, new, batch_size=16, executor=RayExecutor())
    assert summary.record["executor"]["blocks"] == 2
    assert_same(arrays(new), expected)


@needs_ray
def test_a_failed_block_is_one_line_naming_its_rows_and_worker(ray_local: object) -> None:
    def fails_on(start: int, stop: int, bad: int, kind: type[Exception]) -> int:
        if start == bad:
            raise kind("no such image")
        return stop - start

    ex = RayExecutor()
    with ex.session() as ray:
        assert ex.map_blocks(ray, fails_on, [(0, 5), (5, 7)], (-1, ValueError), quiet=True) == [
            5,
            2,
        ]
        with pytest.raises(ValueError) as err:  # bad input everywhere: a ValueError (exit 2)
            ex.map_blocks(ray, fails_on, [(0, 5), (5, 7)], (5, ValueError), quiet=True)
        text = str(err.value)
        assert "\n" not in text
        assert (
            text.startswith("block 1 (rows 5-6) failed on ") and "(node " in text and "pid " in text
        )
        assert text.endswith("ValueError: no such image")
        with pytest.raises(BlockFailedError, match=r"^block 0 \(rows 0-4\) failed on .*OSError"):
            ex.map_blocks(ray, fails_on, [(0, 5), (5, 7)], (0, OSError), quiet=True)


@needs_ray
def test_a_block_whose_worker_dies_is_retried(ray_local: object, tmp_path: Path) -> None:
    arm = tmp_path / "armed"
    arm.touch()

    def dies_once(start: int, stop: int, armed: str) -> int:
        try:
            os.replace(armed, armed + ".fired")  # only the first attempt dies
        except FileNotFoundError:
            return stop - start
        os._exit(1)

    ex = RayExecutor(max_retries=1)
    with ex.session() as ray:
        assert ex.map_blocks(ray, dies_once, [(0, 3)], (str(arm),), quiet=True) == [3]
    assert (tmp_path / "armed.fired").exists()


def _npz(path: Path, n: int, seed: int) -> Path:
    run = build_tiny_run(path.with_suffix(""), n=n, seed=seed)
    np.savez(path, test_images=run.read_array("images")[:, 0])  # (N, S, S) gray, no labels
    return path


@needs_ray
@pytest.mark.slow
def test_cli_predict_with_ray_writes_the_local_arrays(
    ray_local: object, trained: RunDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDAUDIT_SECRET", "k" * 40)
    trained.update_run_json({"ingest": {"options": {"image_size": 32, "channels": "gray"}}})
    data = _npz(tmp_path / "new.npz", n=50, seed=4)
    common = [
        "predict",
        str(trained.path),
        "--npz",
        str(data),
        "--threads",
        "1",
        "--batch-size",
        "16",
    ]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    local, on_ray = RunDir(tmp_path / "local"), RunDir(tmp_path / "ray")
    assert_same(arrays(on_ray), arrays(local))
    info = on_ray.read_run_json()["predict"]
    assert info["executor"]["kind"] == "ray" and info["executor"]["blocks"] == 2
    assert local.read_run_json()["predict"]["executor"]["kind"] == "local"


def _predict_cli(
    trained: RunDir, tmp_path: Path, out: Path, *flags: str, hide_ray: bool = False
) -> subprocess.CompletedProcess[str]:
    """``medaudit predict TRAINED --npz (absent) --out OUT FLAGS``: refused before ingesting."""
    npz = str(tmp_path / "absent.npz")
    return cli(
        "predict",
        str(trained.path),
        "--npz",
        npz,
        "--out",
        str(out),
        *flags,
        cwd=tmp_path,
        hide_ray=hide_ray,
    )


def test_cli_predict_without_ray_says_what_to_install(trained: RunDir, tmp_path: Path) -> None:
    out = tmp_path / "never"
    res = _predict_cli(trained, tmp_path, out, "--executor", "ray", hide_ray=True)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and RAY_MISSING in lines[0]
    assert not out.exists()  # refused before ingestion


@pytest.mark.parametrize("flag", [["--cpus-per-fold", "2"], ["--ray-address", "auto"]])
def test_cli_predict_ray_flags_need_the_ray_executor(
    trained: RunDir, tmp_path: Path, flag: list[str]
) -> None:
    res = _predict_cli(trained, tmp_path, tmp_path / "x", *flag)
    assert res.returncode == 2
    assert f"{flag[0]} need(s) --executor ray" in res.stderr.strip().splitlines()[-1]


def test_local_executor_is_the_default(
    trained: RunDir, make_tiny_run: Callable[..., RunDir]
) -> None:
    new = make_tiny_run("plain", n=20, seed=5)
    rec = predict_run(trained, new, executor=LocalExecutor()).record
    assert rec["executor"]["kind"] == "local" and rec["executor"]["blocks"] == 1
