"""Command-line options that choose where folds train: ``--executor local|ray``.

Shared by ``train``, ``run`` and ``demo`` (added by
:func:`medaudit.commands.train.add_train_arguments`). ``--jobs N`` stays the
single-machine path (local processes); ``--executor ray`` runs each fold as a
Ray task (:class:`training.executors.RayExecutor`), on this machine without
``--ray-address``, on a cluster with it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from training.executors import Executor

__all__ = ["add_executor_arguments", "executor_from_args"]


def add_executor_arguments(parser: argparse.ArgumentParser, *, unit: str = "one fold") -> None:
    """Add ``--executor``, ``--ray-address``, ``--cpus-per-fold``, ``--gpus-per-fold``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    unit : str
        What one Ray task does, for the help texts (``predict``: "a block of rows").
    """
    g = parser.add_argument_group("scale-out (docs/scale-out.md)")
    local = "folds in --jobs processes" if unit == "one fold" else "in this process"
    g.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help=f"local: this machine, {local}; ray: Ray tasks of {unit} each, "
        "on this machine or the cluster of --ray-address; needs "
        "pip install medaudit[ray] (default: %(default)s)",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to use with --executor ray: auto (the cluster of this "
        "node), ray://HEAD:10001 (Ray Client) or HEAD:6379; default: start Ray "
        "on this machine",
    )
    g.add_argument(
        "--cpus-per-fold",
        type=int,
        default=None,
        metavar="N",
        help=f"CPUs each Ray task ({unit}) requests, also its torch threads (default: 1)",
    )
    g.add_argument(
        "--gpus-per-fold",
        type=float,
        default=None,
        metavar="G",
        help=f"GPUs each Ray task ({unit}) requests, fractions share a GPU (default: 0)",
    )


def executor_from_args(args: argparse.Namespace) -> Executor:
    """The executor chosen by :func:`add_executor_arguments` options.

    Raises
    ------
    ValueError
        When Ray options are given without ``--executor ray``, or ``--jobs`` with it,
        or a value is out of range; :class:`training.executors.ExecutorUnavailableError`
        (a ``ValueError``) when Ray is not installed or ``--ray-address`` does not answer.
    """
    from training.executors import LocalExecutor, RayExecutor

    name = getattr(args, "executor", "local")
    ray_flags = [
        f
        for f, v in (
            ("--ray-address", args.ray_address),
            ("--cpus-per-fold", args.cpus_per_fold),
            ("--gpus-per-fold", args.gpus_per_fold),
        )
        if v is not None
    ]
    if name == "local":
        if ray_flags:
            raise ValueError(f"{', '.join(ray_flags)} need(s) --executor ray")
        return LocalExecutor()
    if getattr(args, "jobs", 1) != 1:
        raise ValueError(
            "--jobs sets local processes; with --executor ray, folds run in "
            "parallel as the cluster's resources allow: use --cpus-per-fold / "
            "--gpus-per-fold"
        )
    cpus = 1 if args.cpus_per_fold is None else args.cpus_per_fold
    gpus = 0.0 if args.gpus_per_fold is None else args.gpus_per_fold
    if cpus < 1:
        raise ValueError(f"--cpus-per-fold must be >= 1; got {cpus}")
    if gpus < 0:
        raise ValueError(f"--gpus-per-fold must be >= 0; got {gpus}")
    executor = RayExecutor(address=args.ray_address, cpus_per_fold=cpus, gpus_per_fold=gpus)
    executor.check()  # before any ingestion or training: Ray installed, address answering
    return executor
