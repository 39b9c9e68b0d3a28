"""The Ray executor: same arrays as the local one, retried lost workers, clear errors.

Ray runs on this machine (``ray.init(num_cpus=2)``) with timm's ``test_resnet``
on a tiny run. Skipped when ray is not importable (``pip install medaudit[ray]``),
except the missing-ray test, which hides ray itself.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from audit.rundir import RunDir
from tests.training.ray_support import CFG, arrays, assert_same, cli, local_ray, needs_ray
from training import train_run
from training.executors import (
    MEMBERS_FILE,
    RAY_MISSING,
    WORKER_FILE,
    ExecutorUnavailableError,
    FoldFailedError,
    LocalExecutor,
    RayExecutor,
)
from training.fold_outputs import DONE, fold_dir


@pytest.fixture(scope="module")
def crash_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Arming folder of the test-only crash hook (``$MEDAUDIT_TEST_CRASH_DIR``)."""
    return tmp_path_factory.mktemp("crash")


@pytest.fixture(scope="module")
def ray_local(crash_dir: Path) -> Iterator[object]:
    """One local Ray (2 CPUs) for the module; its workers inherit the crash-hook variable."""
    os.environ["MEDAUDIT_TEST_CRASH_DIR"] = str(crash_dir)
    try:
        with local_ray() as ray:
            yield ray
    finally:
        os.environ.pop("MEDAUDIT_TEST_CRASH_DIR", None)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A run trained by the local executor (in this process, 1 thread)."""
    from tests.conftest import build_tiny_run

    run = build_tiny_run(tmp_path_factory.mktemp("local") / "run", n=80)
    train_run(run, CFG, executor=LocalExecutor())
    return run


@pytest.fixture(scope="module")
def local_reference(local_run: RunDir) -> dict[str, np.ndarray]:
    """The local executor's arrays."""
    return arrays(local_run)


@needs_ray
@pytest.mark.slow
def test_ray_matches_local_bitwise_and_records_workers(
    ray_local: object,
    make_tiny_run: Callable[..., RunDir],
    local_run: RunDir,
    local_reference: dict[str, np.ndarray],
) -> None:
    run = make_tiny_run("ray", n=80)
    summary = train_run(run, CFG, executor=RayExecutor(cpus_per_fold=1))
    assert_same(arrays(run), local_reference)  # same seed and thread count: bitwise
    assert [r.fold for r in summary.folds] == [0, 1]
    train, local = run.read_run_json()["train"], local_run.read_run_json()["train"]
    assert train["executor"] == {
        "kind": "ray",
        "address": None,
        "cpus_per_fold": 1,
        "gpus_per_fold": 0.0,
        "threads": 1,
        "max_retries": 3,
    }
    assert local["executor"] == {
        "kind": "local",
        "address": None,
        "cpus_per_fold": 1,
        "gpus_per_fold": 0,
    }
    # where the folds ran is not part of the run's identity
    assert train["config_hash"] == local["config_hash"] and train["config"] == local["config"]
    oof = {k: v for k, v in train["artifacts"].items() if k.startswith("oof/")}
    assert oof and oof == {k: local["artifacts"][k] for k in oof}
    for k in range(2):
        info = json.loads((fold_dir(run, k) / WORKER_FILE).read_text())
        assert info["pid"] > 0 and info["node_id"]
    # a rerun with the other executor reuses both folds (done markers, same config hash)
    again = train_run(run, CFG, executor=LocalExecutor())
    assert all(r.reused for r in again.folds)
    assert_same(arrays(run), local_reference)
    assert run.read_run_json()["train"]["executor"]["kind"] == "local"


def _arm(crash_dir: Path, fold: int) -> None:
    """Make the next attempt of ``fold`` die mid-fold (the executor's test-only hook)."""
    (crash_dir / f"fold_{fold}.fired").unlink(missing_ok=True)
    (crash_dir / f"fold_{fold}").touch()


@needs_ray
@pytest.mark.slow
def test_worker_killed_mid_fold_is_retried_with_identical_outputs(
    ray_local: object,
    make_tiny_run: Callable[..., RunDir],
    crash_dir: Path,
    local_reference: dict[str, np.ndarray],
) -> None:
    run = make_tiny_run("crash", n=80)
    _arm(crash_dir, 1)  # the first attempt of fold 1 dies after a partial write
    summary = train_run(run, CFG, executor=RayExecutor(max_retries=2))
    assert (crash_dir / "fold_1.fired").exists()  # the hook did fire
    assert not any(r.reused for r in summary.folds)
    assert_same(arrays(run), local_reference)


@needs_ray
@pytest.mark.slow
def test_lost_worker_without_retries_fails_that_fold_only_and_rerun_redoes_it(
    ray_local: object,
    make_tiny_run: Callable[..., RunDir],
    crash_dir: Path,
    local_reference: dict[str, np.ndarray],
) -> None:
    run = make_tiny_run("no_retry", n=80)
    _arm(crash_dir, 0)
    with pytest.raises(
        FoldFailedError,
        match=r"^fold 0 failed on .*\(node .*pid \d+\): "
        r"\w*(Worker|Crash|Died|Error)\w*.*finished and are kept",
    ) as err:
        train_run(run, CFG, executor=RayExecutor(max_retries=0))
    assert "\n" not in str(err.value)
    assert not (fold_dir(run, 0) / DONE).exists()  # partial output, no marker: never read
    assert (fold_dir(run, 0) / "oof_probs.npy").exists()
    assert (fold_dir(run, 1) / DONE).exists()
    assert not (run.path / "oof").exists()  # nothing published
    summary = train_run(run, CFG, executor=RayExecutor())
    assert [r.reused for r in summary.folds] == [False, True]  # only fold 0 retrained
    assert_same(arrays(run), local_reference)


@needs_ray
@pytest.mark.slow
def test_fold_error_is_one_line_naming_the_worker(
    ray_local: object, make_tiny_run: Callable[..., RunDir]
) -> None:
    run = make_tiny_run("bad", n=80)
    images = np.load(run.path / "images.npy")
    images[:5] = 0
    np.save(run.path / "images.npy", images.astype(np.float32) + np.nan)  # non-finite inputs
    with pytest.raises((ValueError, TypeError, FoldFailedError)) as err:
        train_run(run, CFG, executor=RayExecutor())
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("fold ") and " failed on " in text and "pid" in text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


@needs_ray
@pytest.mark.parametrize("scheme", ["ray://", ""])
def test_unreachable_address_is_one_clear_error_quickly(scheme: str) -> None:
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ExecutorUnavailableError, match=r"Ray cluster at .* is not reachable"):
        RayExecutor(address=address, connect_timeout=3).check()
    assert time.perf_counter() - t0 < 10


def test_cli_without_ray_says_what_to_install(
    make_tiny_run: Callable[..., RunDir], tmp_path: Path
) -> None:
    run = make_tiny_run("cli", n=40)
    res = cli("train", str(run.path), "--executor", "ray", cwd=tmp_path, hide_ray=True)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install medaudit[ray]" in lines[0]
    assert RAY_MISSING in lines[0]


@needs_ray
def test_cli_unreachable_address_exits_2_with_one_line(
    make_tiny_run: Callable[..., RunDir], tmp_path: Path
) -> None:
    run = make_tiny_run("cli2", n=40)
    res = cli(
        "train",
        str(run.path),
        "--executor",
        "ray",
        "--ray-address",
        f"ray://127.0.0.1:{_closed_port()}",
        cwd=tmp_path,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not reachable" in lines[0], res.stderr


def test_cli_ray_flags_need_the_ray_executor(
    make_tiny_run: Callable[..., RunDir], tmp_path: Path
) -> None:
    run = make_tiny_run("cli3", n=40)
    res = cli("train", str(run.path), "--gpus-per-fold", "1", cwd=tmp_path)
    assert res.returncode == 2 and "--gpus-per-fold need(s) --executor ray" in res.stderr


def test_cli_run_checks_the_executor_before_ingesting(tmp_path: Path) -> None:
    out = tmp_path / "never"
    res = cli(
        "run",
        "--manifest",
        str(tmp_path / "absent.csv"),
        "--out",
        str(out),
        "--executor",
        "ray",
        cwd=tmp_path,
        hide_ray=True,
    )
    assert res.returncode == 2 and "pip install medaudit[ray]" in res.stderr
    assert not out.exists()  # refused before ingestion wrote anything


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cpus_per_fold": 0}, "cpus_per_fold must be an int >= 1; got 0"),
        ({"gpus_per_fold": -1}, "gpus_per_fold must be a number >= 0"),
        ({"max_retries": True}, "max_retries must be an int >= 0"),
    ],
)
def test_ray_executor_settings_are_validated(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RayExecutor(**kwargs)  # type: ignore[arg-type]


@needs_ray
def test_address_without_port_or_with_another_scheme_is_refused() -> None:
    for address in ("head-node", "http://head:10001"):
        with pytest.raises(ExecutorUnavailableError, match="is not reachable"):
            RayExecutor(address=address).check()


@needs_ray
@pytest.mark.slow
def test_each_model_of_a_fold_is_its_own_task_with_the_same_outputs(
    ray_local: object, make_tiny_run: Callable[..., RunDir]
) -> None:
    """models_per_fold = 2: one Ray task per model (nested in the fold's), bitwise as local."""
    cfg = CFG.replace(models_per_fold=2)
    local = make_tiny_run("members-local", n=80)
    train_run(local, cfg, executor=LocalExecutor())
    run = make_tiny_run("members-ray", n=80)
    train_run(run, cfg, executor=RayExecutor(cpus_per_fold=1))
    assert_same(arrays(run), arrays(local))
    for k in range(2):  # each model ran in a task of its own, not in its fold's process
        fold_pid = json.loads((fold_dir(run, k) / WORKER_FILE).read_text())["pid"]
        models = json.loads((fold_dir(run, k) / MEMBERS_FILE).read_text())
        assert [m["model"] for m in models] == [1, 2]
        assert all(m["pid"] > 0 and m["pid"] != fold_pid for m in models)
