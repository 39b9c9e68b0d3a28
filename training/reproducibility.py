"""Reproducibility: seeds, deterministic kernels and CPU thread control.

A fold's results are a function of the run seed, the fold index, the data and
the CPU thread count: every seed is derived from the run seed
(:func:`fold_seed`, :func:`member_seed`), :func:`seed_everything` seeds the
global generators third-party code draws from, :func:`deterministic` switches
on deterministic kernels for the duration of a fold, and :func:`torch_threads`
fixes the intra-op thread count (float sums, and so the bits of the results,
depend on it).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

from training.device import DeviceSetup

__all__ = ["deterministic", "fold_seed", "member_seed", "seed_everything", "torch_threads"]


def fold_seed(seed: int, fold: int) -> int:
    """The seed of fold ``fold`` derived from the run seed (a 31-bit int)."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0] & 0x7FFFFFFF)


def member_seed(seed: int, fold: int, member: int) -> int:
    """The seed of ensemble member ``member`` of fold ``fold`` (member 0: :func:`fold_seed`)."""
    if member == 0:
        return fold_seed(seed, fold)
    return int(np.random.SeedSequence([seed, fold, member]).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds third-party code using the legacy global RNG
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(setup: DeviceSetup) -> Iterator[None]:
    """Deterministic kernels for the duration of a fold (restored afterwards).

    On a CPU ``torch.use_deterministic_algorithms(True, warn_only=True)`` is
    switched on, but not its debugging aid
    ``torch.utils.deterministic.fill_uninitialized_memory``, which writes NaN into
    every tensor made by ``torch.empty`` so that a kernel reading memory it never
    wrote shows up as NaN. The kernels used here write before they read (the
    determinism and resume tests check that results stay bitwise equal), so the
    filling would only cost time. On CUDA cuDNN autotuning is switched off
    instead (full determinism there would need ``CUBLAS_WORKSPACE_CONFIG`` and
    slower kernels).

    Parameters
    ----------
    setup : DeviceSetup
        The device the fold runs on.
    """
    import torch.utils.deterministic as torch_deterministic

    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_fill = torch_deterministic.fill_uninitialized_memory
    prev_bench = torch.backends.cudnn.benchmark
    try:
        if setup.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch_deterministic.fill_uninitialized_memory = False
        else:
            torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch_deterministic.fill_uninitialized_memory = prev_fill
        torch.backends.cudnn.benchmark = prev_bench


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op CPU threads inside the block (``None``: unchanged)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
