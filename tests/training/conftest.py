"""Fixtures of the training-core tests: a fast config and tiny runs with a split column."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from audit.rundir import RunDir
from training import TrainConfig

#: A tiny, fast fine-tuning config: timm's ``test_resnet``, 3 folds, 3 epochs, lr 3e-3, 32 px cache,
#: with the epoch count selected on the inner split (the long-run recipe, which the
#: budget-aware defaults would switch off at 3 epochs; ``tests/training/test_budget.py``
#: tests the short-run path).
FAST = TrainConfig(model="test_resnet", folds=3, epochs=3, batch_size=32, lr=3e-3, quiet=True,
                   select_epochs=True)


@pytest.fixture
def fast_config() -> TrainConfig:
    """See :data:`FAST`."""
    return FAST


@pytest.fixture
def make_split_run(make_tiny_run: Callable[..., RunDir]) -> Callable[..., RunDir]:
    """Factory: a tiny run whose manifest has a ``split`` column (every 5th patient 'test')."""

    def _make(name: str = "split_run", **kwargs: object) -> RunDir:
        run = make_tiny_run(name, **kwargs)
        manifest = run.read_manifest()
        patient = manifest["patient_key"].str[1:].astype(int).to_numpy()
        manifest["split"] = np.where(patient % 5 == 0, "test", "train")
        run.write_manifest(manifest)
        return run

    return _make


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from more threads, and on a shared 2-core machine
    oversubscribed OpenMP threads slow them down many times over."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
