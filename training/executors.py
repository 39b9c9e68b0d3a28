"""Where the folds of a run are trained: local processes or a Ray cluster.

An executor takes the folds that still have to be trained and returns their
:class:`~training.fold_outputs.FoldResult`. Every fold is already an
independent unit of work (:func:`training.train_fold`): a function of the run
directory, the fold index and the config, which writes only its own outputs in
the work area (``.work/train/fold_<k>/``) atomically with its ``done`` marker
last. The driver (:func:`training.train_run`) holds the run directory's writer
lock and publishes ``oof/`` and ``train/`` once every fold has finished, so an
executor never touches the published run.

- :class:`LocalExecutor`: this process (``jobs=1``) or ``jobs`` spawned
  processes on this machine (``TrainConfig.jobs``): the single-machine path.
- :class:`RayExecutor`: each fold is a Ray task with its resource request
  (CPUs, GPUs); without an address Ray starts on this machine, so the same
  command runs on a laptop and on a cluster. Ray (https://docs.ray.io) does
  the scheduling, retries a task whose worker died, and spreads tasks over
  nodes; nothing here re-implements a scheduler.

A worker lost mid-fold leaves no ``done`` marker, so its partial files are
never read: Ray's retry (``max_retries``) or a rerun of the same command
redoes that fold only (its stale arrays are removed first).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from audit.rundir import RunDir
from training.config import TrainConfig
from training.fold_outputs import FoldResult, fold_dir

__all__ = [
    "MEMBERS_FILE",
    "RAY_MISSING",
    "RAY_UNREACHABLE",
    "WORKER_FILE",
    "BlockFailedError",
    "Executor",
    "ExecutorUnavailableError",
    "FoldFailedError",
    "LocalExecutor",
    "RayExecutor",
    "ray_available",
    "redact_address",
    "require_visible",
]

_log = logging.getLogger(__name__)

#: Message when ``executor='ray'`` is asked for without Ray installed.
RAY_MISSING = (
    "executor 'ray' needs the ray package, which is not installed in this Python: "
    "pip install medaudit[ray]"
)
#: Message when a Ray address does not answer.
RAY_UNREACHABLE = (
    "Ray cluster at {address!r} is not reachable ({reason}); check the address "
    "(ray://HEAD:10001 for Ray Client, HEAD:6379 or 'auto' on a cluster node) and that the "
    "cluster is up"
)
#: One line per failed fold: the worker that ran it and its error.
FOLD_FAILED = "fold {fold} failed on {worker}: {error}"
#: One line per failed block of rows (``map_blocks``): its rows, worker and error.
BLOCK_FAILED = "{what} {index} (rows {start}-{stop}) failed on {worker}: {error}"

#: The file a Ray worker writes into the fold's work folder when it starts the fold:
#: host, Ray node id and pid (the progress display reads it; it stays as a record).
WORKER_FILE = "worker.json"
#: Where each model of a fold ran, next to :data:`WORKER_FILE` (several models per fold).
MEMBERS_FILE = "members.json"

#: Tests only: a folder of arming files (``fold_<k>``) that make the worker of fold k
#: die once with ``os._exit`` after writing part of its outputs (see ``tests/training``).
_TEST_CRASH_ENV = "MEDAUDIT_TEST_CRASH_DIR"


class ExecutorUnavailableError(ValueError):
    """The executor cannot run here: Ray is not installed, or its cluster does not answer."""


class FoldFailedError(RuntimeError):
    """One or more folds failed on their workers (one line per fold in the message)."""


class BlockFailedError(RuntimeError):
    """One or more blocks of rows failed on their workers (one line per block)."""


class Executor(Protocol):
    """Trains the given folds of a run and returns their results."""

    def run_folds(self, run: RunDir, config: TrainConfig, todo: list[int]) -> dict[int, FoldResult]:
        """Train folds ``todo`` of ``run`` under ``config``; results by fold index."""
        ...  # pragma: no cover

    def describe(self, threads: int | None = None) -> dict[str, Any]:
        """What ran the work, for ``run.json``: ``{kind, address, cpus_per_fold, gpus_per_fold}``.

        ``threads`` is the torch thread count of each unit of work when the caller
        set one (``TrainConfig.threads``, ``predict --threads``).
        """
        ...  # pragma: no cover


def redact_address(address: str | None) -> str | None:
    """``address`` without credentials: user, password, query and fragment become ``***``.

    Parameters
    ----------
    address : str or None
        A Ray address (``auto``, ``HOST:PORT``, ``ray://[USER:TOKEN@]HOST:PORT[?k=v]``).

    Returns
    -------
    str or None
        Safe to record in ``run.json`` and logs (``None`` stays ``None``).

    Examples
    --------
    >>> redact_address("ray://alice:s3cret@head:10001?token=abc")
    'ray://***@head:10001?***'
    >>> redact_address("head:6379")
    'head:6379'
    """
    if address is None:
        return None
    parts = urlsplit(address if "://" in address else f"//{address}")
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    text = f"{parts.scheme}://{netloc}" if parts.scheme else netloc
    text += parts.path
    if parts.query:
        text += "?***"
    if parts.fragment:
        text += "#***"
    return text


def ray_available() -> bool:
    """Whether the optional ``ray`` package is importable (``pip install medaudit[ray]``)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------
# Local processes
# ---------------------------------------------------------------------------------------


def _worker_init(threads: int, level: int, parent_pid: int) -> None:
    import threading

    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

    def exit_with_parent() -> None:  # a killed `medaudit train` leaves no orphaned workers
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=exit_with_parent, name="medaudit-parent-watch", daemon=True).start()


def _run_fold_in_worker(run_path: str, fold: int, config: TrainConfig) -> FoldResult:
    from training.fold_training import train_fold

    return train_fold(run_path, fold, config)


@dataclass(frozen=True)
class LocalExecutor:
    """Folds in this process, or in ``TrainConfig.jobs`` spawned processes on this machine.

    Each process gets ``TrainConfig.threads`` CPU threads (default: cores // jobs).
    """

    name: str = field(default="local", init=False)

    def describe(self, threads: int | None = None) -> dict[str, Any]:
        """``kind`` local, no address, ``threads`` (``None``: torch's default) per fold, no GPU.

        The number of processes is ``TrainConfig.jobs``, in the recorded config.
        """
        return {"kind": self.name, "address": None, "cpus_per_fold": threads, "gpus_per_fold": 0}

    def run_folds(self, run: RunDir, config: TrainConfig, todo: list[int]) -> dict[int, FoldResult]:
        """Train folds ``todo``; see the class docstring."""
        from tqdm.auto import tqdm

        results: dict[int, FoldResult] = {}
        if not todo:
            return results
        jobs = min(config.jobs, len(todo))
        if jobs <= 1:
            from training.fold_training import train_fold

            for k in todo:
                results[k] = train_fold(run, k, config)
            return results
        threads = config.threads or max(1, _cpu_count() // jobs)
        level = logging.getLogger().getEffectiveLevel()
        _log.info(
            "training %d folds in %d processes with %d thread(s) each", len(todo), jobs, threads
        )
        ctx = multiprocessing.get_context("spawn")
        worker_cfg = config.replace(quiet=True, jobs=1, threads=threads)
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(threads, level, os.getpid()),
        ) as pool:
            futures: dict[Future[FoldResult], int] = {
                pool.submit(_run_fold_in_worker, str(run.path), k, worker_cfg): k for k in todo
            }
            bar = tqdm(total=len(todo), desc="folds", unit="fold", disable=config.quiet)
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        res = fut.result()
                        results[futures[fut]] = res
                        bar.update(1)
                        bar.set_postfix(last=f"fold {res.fold} AUC {res.auc:.3f}")
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
            finally:
                bar.close()
        return results


# ---------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailableError(RAY_MISSING) from None
    return ray


def _probe(address: str, timeout: float) -> None:
    """Fail fast when ``host:port`` (or ``ray://host:port``) does not accept connections.

    Ray's own connect waits 30 s (Ray Client) to minutes (GCS) and may exit the
    process; a TCP connect with a timeout answers in seconds.
    """
    parts = urlsplit(address if "://" in address else f"//{address}")
    host, port = parts.hostname, parts.port
    if parts.scheme not in ("", "ray"):
        raise ExecutorUnavailableError(
            RAY_UNREACHABLE.format(
                address=redact_address(address),
                reason=f"unknown scheme {parts.scheme!r}; use ray://HOST:PORT",
            )
        )
    if not host or port is None:
        raise ExecutorUnavailableError(
            RAY_UNREACHABLE.format(
                address=redact_address(address),
                reason="expected HOST:PORT, ray://HOST:PORT or 'auto'",
            )
        )
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        reason = (
            f"no answer within {timeout:g} s"
            if isinstance(err, TimeoutError)
            else (err.strerror or str(err) or type(err).__name__).lower()
        )
        raise ExecutorUnavailableError(
            RAY_UNREACHABLE.format(address=redact_address(address), reason=reason)
        ) from None


def _worker_label(info: dict[str, Any] | None) -> str:
    if not info:
        return "an unknown worker"
    return f"{info.get('host', '?')} (node {str(info.get('node_id', '?'))[:8]}, pid {info.get('pid', '?')})"


def _read_worker(run: RunDir, fold: int) -> dict[str, Any] | None:
    try:
        info = json.loads((fold_dir(run, fold) / WORKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _crash_once_for_test(fold: int) -> None:
    """Tests only: die with ``os._exit`` mid-fold when ``$MEDAUDIT_TEST_CRASH_DIR/fold_<k>`` exists.

    The arming file is renamed first (atomic), so only one attempt dies. The
    worker writes one out-of-fold array, then exits before the rest and the
    ``done`` marker: the partial output a lost worker leaves behind.
    """
    folder = os.environ.get(_TEST_CRASH_ENV)
    if not folder:
        return
    arm = Path(folder) / f"fold_{fold}"
    try:
        os.replace(arm, arm.with_name(f"{arm.name}.fired"))
    except FileNotFoundError:
        return
    import numpy as np

    import training.fold_training as fold_training

    def write_part_then_die(run: RunDir, fold: int, outputs: Any, **_: Any) -> None:
        np.save(fold_dir(run, fold) / "oof_probs.npy", outputs.oof.probs)
        os._exit(1)

    fold_training.write_fold_outputs = write_part_then_die  # type: ignore[assignment]


def require_visible(run_path: str) -> Path:
    """``run_path`` as a path, or a clear error when this worker does not see that run.

    Raises
    ------
    FileNotFoundError
        When ``run_path/manifest.parquet`` is missing here (naming this host).
    """
    path = Path(run_path)
    if not (path / "manifest.parquet").is_file():
        raise FileNotFoundError(
            f"run directory {run_path} is not visible on worker host {socket.gethostname()}: "
            "put it on storage that every node mounts at the same path"
        )
    return path


def _block_task(fn: Any, start: int, stop: int, *args: Any) -> tuple[bool, Any]:
    """The Ray task of one block: ``(True, fn(start, stop, *args))``, or ``(False, failure)``.

    The failure names this worker (host, Ray node id, pid) and the error in one
    line; whether it was bad input (``ValueError``/``TypeError``) decides the
    driver's exception.
    """
    import ray

    try:
        return True, fn(start, stop, *args)
    except Exception as err:
        info = {
            "host": socket.gethostname(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
        }
        return False, {
            "worker": _worker_label(info),
            "error": _one_line(err),
            "bad_input": isinstance(err, ValueError | TypeError),
        }


def _ray_member_task(
    run_path: str, fold: int, config: TrainConfig, member: int
) -> tuple[Any, dict[str, Any]]:
    """The Ray task of one model of a fold (several models per fold): train and return it."""
    import ray

    from training.fold_training import train_fold_member

    info = {
        "model": member + 1,
        "host": socket.gethostname(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }
    return train_fold_member(require_visible(run_path), fold, config, member), info


def _ray_member_map(options: dict[str, Any]) -> Any:
    """A ``member_map`` for :func:`training.train_fold` that runs each model as a Ray task.

    Called inside a fold's task: the fold task waits in ``ray.get`` (Ray lends its CPU
    to the nested tasks meanwhile), then scores and writes the fold itself.
    """
    import ray

    task = ray.remote(_ray_member_task)

    def member_map(run_path: str, fold: int, config: TrainConfig, members: list[int]) -> list[Any]:
        refs = [
            task.options(**{**options, "name": f"medaudit fold {fold} model {m + 1}"}).remote(
                run_path, fold, config, m
            )
            for m in members
        ]
        done = ray.get(refs)
        run = RunDir(run_path)
        d = fold_dir(run, fold)
        run.write_json(f"{d.relative_to(run.path).as_posix()}/{MEMBERS_FILE}", [i for _, i in done])
        return [m for m, _ in done]

    return member_map


def _ray_fold_task(
    run_path: str,
    fold: int,
    config: TrainConfig,
    level: int,
    member_options: dict[str, Any] | None = None,
) -> tuple[FoldResult, dict[str, Any]]:
    """The Ray task of one fold: note the worker, train the fold, return its result.

    With several models per fold (``member_options`` given) each model is a Ray task
    of its own with the same resource request.
    """
    import ray

    from training.fold_training import train_fold

    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    path = require_visible(run_path)
    host = socket.gethostname()
    run = RunDir(path)
    info = {
        "host": host,
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    d = fold_dir(run, fold)
    d.mkdir(parents=True, exist_ok=True)
    run.write_json(f"{d.relative_to(path).as_posix()}/{WORKER_FILE}", info)
    _crash_once_for_test(fold)
    member_map = None if member_options is None else _ray_member_map(member_options)
    return train_fold(run, fold, config, member_map=member_map), info


def _one_line(err: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, cut at ``limit`` characters (Ray's are long)."""
    text = " ".join(str(err).split()) or "no message"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}"


def _cause(err: BaseException) -> BaseException:
    """The user code's exception inside a ``RayTaskError`` (else ``err``)."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, BaseException) else err


@dataclass
class _Board:
    """The state of every remote fold, shown as one progress bar (done/running/failed)."""

    todo: list[int]
    workers: dict[int, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    done: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    def running(self) -> list[int]:
        return [
            k
            for k in self.todo
            if k in self.workers and k not in self.done and k not in self.failed
        ]

    def postfix(self) -> str:
        run = self.running()
        where = ", ".join(
            f"{k}@{self.workers[k].get('host', '?')}:{self.workers[k].get('pid', '?')}" for k in run
        )
        return (
            f"done {len(self.done)} running {len(run)}"
            + (f" [{where}]" if where else "")
            + f" failed {len(self.failed)}"
        )

    def poll(self, run: RunDir) -> None:
        """Read the worker files of unfinished folds; log starts and retries."""
        for k in self.todo:
            if k in self.done or k in self.failed:
                continue
            info = _read_worker(run, k)
            if info is None or info == self.workers.get(k):
                continue
            before = self.workers.get(k)
            self.workers[k] = info
            self.attempts[k] = self.attempts.get(k, 0) + 1
            if before is None:
                _log.info("fold %d started on %s", k, _worker_label(info))
            else:
                _log.warning(
                    "fold %d: worker %s was lost; Ray retries the fold on %s (attempt %d)",
                    k,
                    _worker_label(before),
                    _worker_label(info),
                    self.attempts[k],
                )


@dataclass(frozen=True)
class RayExecutor:
    """Each fold is a Ray task with its resource request.

    Parameters
    ----------
    address : str or None
        ``None`` starts a new Ray on this machine (all its cores), even when
        another Ray runs here; ``"auto"`` joins the cluster this machine belongs to; ``"ray://HOST:10001"`` connects through
        Ray Client; ``"HOST:6379"`` to a cluster's head. When Ray is already
        initialised in this process, that connection is used and left open.
    cpus_per_fold : int
        CPUs each fold task requests; also its torch thread count unless
        ``TrainConfig.threads`` is set.
    gpus_per_fold : float
        GPUs each fold task requests (fractions share a GPU); 0 trains on CPUs
        (Ray then hides the GPUs from the task).
    max_retries : int
        How often Ray re-runs a fold whose worker process or node died.
        Exceptions raised by the fold itself are not retried: they would fail
        again.
    connect_timeout : float
        Seconds to wait for an address to accept a connection.

    Notes
    -----
    The run directory must be visible at the same path on every node (shared
    storage with atomic ``rename``, see ``docs/scale-out.md``): workers read
    ``images.npy`` memory-mapped from it and write their fold outputs there.
    """

    address: str | None = None
    cpus_per_fold: int = 1
    gpus_per_fold: float = 0.0
    max_retries: int = 3
    connect_timeout: float = 10.0
    name: str = field(default="ray", init=False)

    def describe(self, threads: int | None = None) -> dict[str, Any]:
        """Kind, address (:func:`redact_address`), resources per task and torch threads."""
        return {
            "kind": self.name,
            "address": redact_address(self.address),
            "cpus_per_fold": self.cpus_per_fold,
            "gpus_per_fold": self.gpus_per_fold,
            "threads": threads or self.cpus_per_fold,
            "max_retries": self.max_retries,
        }

    def __post_init__(self) -> None:
        for name, kind, low in (
            ("cpus_per_fold", int, 1),
            ("gpus_per_fold", int | float, 0),
            ("max_retries", int, 0),
            ("connect_timeout", int | float, 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind) or not value >= low:
                what = "an int" if kind is int else "a number"
                raise ValueError(f"RayExecutor {name} must be {what} >= {low}; got {value!r}")
        if self.address is not None and (
            not isinstance(self.address, str) or not self.address.strip()
        ):
            raise ValueError(
                f"RayExecutor address must be None or a non-empty str; got {self.address!r}"
            )

    def check(self) -> None:
        """Fail fast, before any work: Ray importable and the address answering.

        Raises
        ------
        ExecutorUnavailableError
            When Ray is not installed, or the address does not answer.
        """
        if not ray_available():
            raise ExecutorUnavailableError(RAY_MISSING)
        if self.address not in (None, "auto"):
            _probe(self.address, self.connect_timeout)

    @contextlib.contextmanager
    def session(self) -> Any:
        """Connect to (or start) Ray inside the block; yields the ``ray`` module.

        Raises
        ------
        ExecutorUnavailableError
            When Ray is not installed, or the address does not answer.
        """
        ray = _import_ray()
        if ray.is_initialized():
            yield ray
            return
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": True,
        }
        if self.address not in (None, "auto"):
            _probe(self.address, self.connect_timeout)
        try:
            # "local" starts a new Ray here even when another one runs on this machine
            # (ray.init() would join the latest cluster started here, someone else's).
            ray.init(address=self.address or "local", **kwargs)
        except (ConnectionError, TimeoutError) as err:
            raise ExecutorUnavailableError(
                RAY_UNREACHABLE.format(
                    address=redact_address(self.address), reason=" ".join(str(err).split())
                )
            ) from None
        try:
            yield ray
        finally:
            ray.shutdown()

    def run_folds(self, run: RunDir, config: TrainConfig, todo: list[int]) -> dict[int, FoldResult]:
        """Train folds ``todo`` as Ray tasks; see the class docstring.

        Raises
        ------
        ExecutorUnavailableError
            When Ray is not installed, or the address does not answer.
        FoldFailedError
            When a fold failed (its worker's error, one line per fold), after
            the other folds have finished (their outputs stay for a rerun).
        ValueError
            When every failed fold failed on bad input (a ``ValueError``).
        """
        if not todo:
            return {}
        with self.session() as ray:
            return self._run(ray, run, config, todo)

    def _run(
        self, ray: Any, run: RunDir, config: TrainConfig, todo: list[int]
    ) -> dict[int, FoldResult]:
        from tqdm.auto import tqdm

        threads = config.threads or self.cpus_per_fold
        worker_cfg = config.replace(quiet=True, jobs=1, threads=threads)
        task = ray.remote(_ray_fold_task)
        # each model of a fold is a task of its own (with a time budget, Ray is refused)
        member_options = (
            self._task_options("medaudit model") if config.models_per_fold > 1 else None
        )
        path = str(run.path.resolve())
        level = max(logging.WARNING, logging.getLogger().getEffectiveLevel())
        for k in todo:  # a worker file of an earlier attempt is not this run's worker
            (fold_dir(run, k) / WORKER_FILE).unlink(missing_ok=True)
        refs = {
            task.options(**self._task_options(f"medaudit fold {k}")).remote(
                path, k, worker_cfg, level, member_options
            ): k
            for k in todo
        }
        _log.info(
            "training %d fold(s) as Ray tasks (%d CPU%s, %g GPU each, %d thread(s))",
            len(todo),
            self.cpus_per_fold,
            "" if self.cpus_per_fold == 1 else "s",
            self.gpus_per_fold,
            threads,
        )
        board = _Board(list(todo))
        results: dict[int, FoldResult] = {}
        bar = tqdm(total=len(todo), desc="folds (ray)", unit="fold", disable=config.quiet)
        pending = list(refs)
        bad_input: list[bool] = []
        shown = ""
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                board.poll(run)
                for ref in ready:
                    k = refs[ref]
                    try:
                        res, info = ray.get(ref)
                    except Exception as err:
                        cause = _cause(err)
                        line = FOLD_FAILED.format(
                            fold=k,
                            worker=_worker_label(board.workers.get(k)),
                            error=_one_line(cause),
                        )
                        board.failed[k] = line
                        bad_input.append(isinstance(cause, ValueError | TypeError))
                        _log.error("%s", line)
                        continue
                    board.workers[k] = info
                    board.done.append(k)
                    results[k] = res
                    _log.info(
                        "fold %d done on %s: AUC %.3f in %.1fs",
                        k,
                        _worker_label(info),
                        res.auc,
                        res.seconds,
                    )
                    bar.update(1)
                if (text := board.postfix()) != shown:  # redraw on change only
                    bar.set_postfix_str(text)
                    shown = text
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        if board.failed:
            message = "; ".join(board.failed[k] for k in sorted(board.failed))
            done = sorted(results)
            message += (
                f" (fold(s) {done} finished and are kept: rerun the same command to "
                "train only the failed fold(s))"
                if done
                else ""
            )
            # Bad input (a ValueError in every failed fold) stays a ValueError: the CLI says
            # so in one line with exit code 2, as for a fold trained locally.
            raise (ValueError if all(bad_input) else FoldFailedError)(message)
        return results

    def _task_options(self, name: str) -> dict[str, Any]:
        """Ray options of one task: its resources; retried only when its worker died."""
        return {
            "num_cpus": self.cpus_per_fold,
            "num_gpus": self.gpus_per_fold,
            "max_retries": self.max_retries,
            "retry_exceptions": False,
            "name": name,
        }

    def task_slots(self, ray: Any) -> int:
        """Tasks of this executor's resource request the connected cluster runs at once.

        Parameters
        ----------
        ray : module
            The connected ``ray`` module (:meth:`session`).

        Returns
        -------
        int
            At least 1.
        """
        res = ray.cluster_resources()
        slots = int(res.get("CPU", 1) // self.cpus_per_fold)
        if self.gpus_per_fold > 0:
            slots = min(slots, int(res.get("GPU", 0) // self.gpus_per_fold))
        return max(1, slots)

    def map_blocks(
        self,
        ray: Any,
        fn: Any,
        blocks: list[tuple[int, int]],
        args: tuple[Any, ...],
        *,
        what: str = "block",
        quiet: bool = False,
    ) -> list[Any]:
        """Run ``fn(start, stop, *args)`` as one Ray task per block; results in block order.

        Each task requests ``cpus_per_fold`` CPUs and ``gpus_per_fold`` GPUs; a task
        whose worker died is re-run (``max_retries``), an exception is not. One
        progress bar counts the blocks.

        Parameters
        ----------
        ray : module
            The connected ``ray`` module (:meth:`session`).
        fn : callable
            A module-level function ``fn(start, stop, *args) -> result``.
        blocks : list of (int, int)
            ``[start, stop)`` row ranges.
        args : tuple
            The other arguments of every task (put once in Ray's object store).
        what : str
            Name of a block in messages.
        quiet : bool
            No progress bar.

        Returns
        -------
        list
            ``fn``'s results, in the order of ``blocks``.

        Raises
        ------
        BlockFailedError
            When a block failed (one line per block: its rows, worker and error),
            after the others finished; ``ValueError`` when every failure was bad input.
        """
        from tqdm.auto import tqdm

        task = ray.remote(_block_task)
        shared = [ray.put(a) for a in (fn, *args)]
        refs = {
            task.options(**self._task_options(f"medaudit {what} {i}")).remote(
                shared[0], start, stop, *shared[1:]
            ): i
            for i, (start, stop) in enumerate(blocks)
        }
        results: dict[int, Any] = {}
        failed: dict[int, str] = {}
        bad_input: list[bool] = []
        pending = list(refs)
        shown = ""
        with tqdm(total=len(blocks), desc=f"{what}s (ray)", unit=what, disable=quiet) as bar:
            try:
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                    for ref in ready:
                        i = refs[ref]
                        try:
                            ok, value = ray.get(ref)
                        except Exception as err:  # the worker died (retries exhausted)
                            ok, value = (
                                False,
                                {
                                    "worker": "a worker that died",
                                    "error": _one_line(_cause(err)),
                                    "bad_input": False,
                                },
                            )
                        if not ok:
                            start, stop = blocks[i]
                            failed[i] = BLOCK_FAILED.format(
                                what=what,
                                index=i,
                                start=start,
                                stop=stop - 1,
                                worker=value["worker"],
                                error=value["error"],
                            )
                            bad_input.append(value["bad_input"])
                            _log.error("%s", failed[i])
                            continue
                        results[i] = value
                        bar.update(1)
                    text = f"done {len(results)} running {len(pending)} failed {len(failed)}"
                    if text != shown:  # redraw on change only
                        bar.set_postfix_str(text)
                        shown = text
            except BaseException:
                for ref in pending:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)
                raise
        if failed:
            message = "; ".join(failed[i] for i in sorted(failed))
            raise (ValueError if all(bad_input) else BlockFailedError)(message)
        return [results[i] for i in range(len(blocks))]
