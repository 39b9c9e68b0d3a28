"""Batch augmentation: ranges, allowed flips, determinism, and mixup."""

from __future__ import annotations

import pytest
import torch

from audit.rundir import RunDir
from training import TrainConfig, train_fold
from training.augment import BatchAugmenter, mixup


def _batch(b: int = 8, side: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 1, side, side, generator=g)


def test_augmenter_keeps_values_in_unit_range_and_is_reproducible_from_the_generator() -> None:
    aug = BatchAugmenter(brightness=0.5, contrast=0.5, probability=1.0)
    x = _batch()
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augmenter_without_flips_never_mirrors_an_asymmetric_image() -> None:
    x = torch.zeros(16, 1, 16, 16)
    x[..., :, :4] = 1.0  # a bright band on the left edge
    out = BatchAugmenter(flips="none", rotate_degrees=10, probability=1.0, brightness=0,
                         contrast=0)(x, torch.Generator().manual_seed(0))
    assert (out[..., :, :4].mean(dim=(1, 2, 3)) > out[..., :, -4:].mean(dim=(1, 2, 3))).all()
    flipped = BatchAugmenter(flips="horizontal", rotate_degrees=0, scale_range=0,
                             translate_fraction=0, brightness=0, contrast=0, probability=1.0)(
        x, torch.Generator().manual_seed(0))
    assert (flipped[..., :, -4:].mean(dim=(1, 2, 3)) > 0.9).any()  # some were mirrored


def test_mixup_blends_each_image_with_its_partner_by_one_weight() -> None:
    x = _batch().contiguous(memory_format=torch.channels_last)
    mixed, perm, lam = mixup(x, 0.4, generator=torch.Generator().manual_seed(0))
    assert 0.0 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(8))
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    assert mixed.is_contiguous(memory_format=torch.channels_last)
    again = mixup(x, 0.4, generator=torch.Generator().manual_seed(0))
    assert again[2] == lam and torch.equal(again[0], mixed)
    lams = [mixup(x, 0.2, generator=torch.Generator().manual_seed(s))[2] for s in range(200)]
    # Beta(0.2, 0.2) is U-shaped: most weights near 0 or 1, mean 1/2
    assert sum(min(v, 1 - v) < 0.1 for v in lams) > 100 and abs(sum(lams) / 200 - 0.5) < 0.1
    with pytest.raises(ValueError, match="mixup alpha must be > 0"):
        mixup(x, 0.0, generator=torch.Generator())


def test_mixup_reaches_training_and_stays_reproducible(
    make_tiny_run, fast_config: TrainConfig  # type: ignore[no-untyped-def]
) -> None:
    import numpy as np

    from training.fold_outputs import load_fold_outputs

    cfg = fast_config.replace(epochs=2, refit=False, mixup=0.0)
    runs: dict[str, RunDir] = {n: make_tiny_run(n) for n in ("plain", "mix", "mix_again")}
    train_fold(runs["plain"], 0, cfg)
    train_fold(runs["mix"], 0, cfg.replace(mixup=0.4))
    train_fold(runs["mix_again"], 0, cfg.replace(mixup=0.4))

    def probs(name: str) -> np.ndarray:
        return load_fold_outputs(runs[name], 0, ()).oof.probs

    np.testing.assert_array_equal(probs("mix"), probs("mix_again"))
    assert not np.array_equal(probs("mix"), probs("plain"))
    with pytest.raises(ValueError, match=r"TrainConfig\.mixup must be >= 0"):
        TrainConfig(mixup=-0.1)
