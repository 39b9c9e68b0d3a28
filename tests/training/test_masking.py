"""Masked re-scoring variants: geometry, purity, errors."""

from __future__ import annotations

import pytest
import torch

from training.masking import (
    MASKED_VARIANTS,
    apply_mask,
    border_only,
    center_masked,
    corners_masked,
)


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(3, 2, 50, 50, generator=torch.Generator().manual_seed(0))


def test_center_masked_replaces_the_central_box_by_the_mean(batch: torch.Tensor) -> None:
    out = center_masked(batch)
    mean = batch.mean(dim=(2, 3), keepdim=True)
    assert out.shape == batch.shape
    assert torch.allclose(out[:, :, 10:40, 10:40], mean.expand(-1, -1, 30, 30))
    assert torch.equal(out[:, :, :10], batch[:, :, :10])
    assert torch.equal(out[:, :, :, 40:], batch[:, :, :, 40:])


def test_border_only_keeps_the_frame(batch: torch.Tensor) -> None:
    out = border_only(batch)
    b = 6  # 12 % of 50
    assert torch.equal(out[:, :, :b], batch[:, :, :b])
    assert torch.equal(out[:, :, -b:], batch[:, :, -b:])
    assert torch.equal(out[:, :, :, :b], batch[:, :, :, :b])
    inner = out[:, :, b:-b, b:-b]
    assert torch.allclose(inner, batch.mean(dim=(2, 3), keepdim=True).expand_as(inner))


def test_corners_masked_hides_four_squares(batch: torch.Tensor) -> None:
    out = corners_masked(batch)
    c = 8  # 15 % of 50, rounded
    mean = batch.mean(dim=(2, 3), keepdim=True).expand(-1, -1, c, c)
    for rows in (slice(0, c), slice(50 - c, 50)):
        for cols in (slice(0, c), slice(50 - c, 50)):
            assert torch.allclose(out[:, :, rows, cols], mean)
    assert torch.equal(out[:, :, c:-c], batch[:, :, c:-c])


def test_variants_are_pure_and_registered(batch: torch.Tensor) -> None:
    before = batch.clone()
    for name in ("center_masked", "border_only", "corners_masked"):
        out = apply_mask(batch, name)
        assert not torch.equal(out, batch)
        assert out.dtype == batch.dtype
    assert torch.equal(batch, before)
    assert sorted(MASKED_VARIANTS) == ["border_only", "center_masked", "corners_masked"]


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="unknown masked variant 'eyes'"):
        apply_mask(torch.rand(1, 1, 8, 8), "eyes")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        center_masked(torch.rand(8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        border_only(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="fraction"):
        center_masked(torch.rand(1, 1, 8, 8), fraction=1.5)
