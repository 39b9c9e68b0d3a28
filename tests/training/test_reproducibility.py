"""Reproducibility: derived seeds, deterministic kernels, thread control."""

from __future__ import annotations

import torch
import torch.utils.deterministic as torch_deterministic

from training.device import resolve_device_setup
from training.reproducibility import (
    deterministic,
    fold_seed,
    member_seed,
    seed_everything,
    torch_threads,
)


def test_seeds_are_derived_per_fold_and_member() -> None:
    assert fold_seed(0, 1) == fold_seed(0, 1) != fold_seed(0, 2) != fold_seed(1, 2)
    assert member_seed(0, 1, 0) == fold_seed(0, 1)
    assert member_seed(0, 1, 1) not in (member_seed(0, 1, 0), member_seed(0, 1, 2))
    assert all(0 <= s < 2**31 for s in (fold_seed(5, 3), member_seed(5, 3, 7)))


def test_seed_everything_makes_torch_draws_repeat() -> None:
    seed_everything(3)
    a = torch.rand(4)
    seed_everything(3)
    assert torch.equal(a, torch.rand(4))


def test_deterministic_context_skips_nan_filling_on_cpu_and_restores_every_flag() -> None:
    setup = resolve_device_setup(device="cpu", precision="fp32")
    before = (torch.are_deterministic_algorithms_enabled(),
              torch_deterministic.fill_uninitialized_memory)
    torch_deterministic.fill_uninitialized_memory = True
    try:
        with deterministic(setup):
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
            # the debugging fill of torch.empty is off: it costs time, changes no result
            assert torch_deterministic.fill_uninitialized_memory is False
        assert torch.are_deterministic_algorithms_enabled() == before[0]
        assert torch_deterministic.fill_uninitialized_memory is True
    finally:
        torch_deterministic.fill_uninitialized_memory = before[1]


def test_torch_threads_sets_and_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
