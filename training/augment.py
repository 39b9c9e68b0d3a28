"""Batch-level, tensor-side augmentation for medical images.

Everything runs on whole batches on the training device after the uint8 batch
has been converted to floats in ``[0, 1]``, so augmentation never becomes the
data-loading bottleneck. Random parameters are drawn from a seeded CPU
:class:`torch.Generator`, which makes a run reproducible on any device.

Transformations, each applied per image with probability
``augment_probability``:

* a small affine warp (rotation, isotropic zoom, shift) through one
  :func:`torch.nn.functional.affine_grid` / ``grid_sample`` call, with border
  replication so no artificial black frame appears (a frame could itself
  become a shortcut);
* flips, only the ones allowed (default none: flipping a chest X-ray swaps
  laterality);
* intensity jitter: an additive brightness shift and a contrast change around
  the image mean, clipped to ``[0, 1]``.

:func:`mixup` (Zhang et al., ICLR 2018) blends each batch with a shuffled copy
of itself after these transformations; the training loss mixes the two label
sets with the same weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BatchAugmenter", "mixup", "resize_batch"]


@dataclass(frozen=True)
class BatchAugmenter:
    """Random augmentation of ``(B, C, H, W)`` float batches in ``[0, 1]``.

    Parameters
    ----------
    flips : {'none', 'horizontal', 'vertical', 'both'}
        Flips allowed (each applied with probability 0.5 when allowed).
    rotate_degrees : float
        Maximum absolute rotation.
    scale_range : float
        Zoom factor drawn from ``[1 - scale_range, 1 + scale_range]``.
    translate_fraction : float
        Maximum shift as a fraction of the side.
    brightness : float
        Maximum absolute additive shift.
    contrast : float
        Maximum relative contrast change.
    probability : float
        Probability that an image is augmented at all.
    """

    flips: Literal["none", "horizontal", "vertical", "both"] = "none"
    rotate_degrees: float = 10.0
    scale_range: float = 0.1
    translate_fraction: float = 0.06
    brightness: float = 0.1
    contrast: float = 0.15
    probability: float = 0.9

    @property
    def enabled(self) -> bool:
        """Whether any transformation can change an image."""
        geometric = self.rotate_degrees or self.scale_range or self.translate_fraction
        return self.probability > 0 and bool(
            geometric or self.flips != "none" or self.brightness or self.contrast
        )

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, H, W)`` floats in ``[0, 1]`` on any device.
        generator : torch.Generator
            A CPU generator (parameters are drawn on the CPU, then moved).

        Returns
        -------
        torch.Tensor
            ``(B, C, H, W)`` augmented batch, same dtype and device.
        """
        if not self.enabled or x.shape[0] == 0:
            return x
        b = x.shape[0]

        def u(*shape: int) -> torch.Tensor:  # uniform in [-1, 1)
            return torch.rand(*shape, generator=generator) * 2 - 1

        active = torch.rand(b, generator=generator) < self.probability
        angle = u(b) * math.radians(self.rotate_degrees)
        scale = 1 + u(b) * self.scale_range
        shift = u(b, 2) * self.translate_fraction * 2  # grid coordinates span 2
        flip_h = torch.rand(b, generator=generator) < 0.5
        flip_v = torch.rand(b, generator=generator) < 0.5
        bright = u(b) * self.brightness
        contrast = 1 + u(b) * self.contrast

        geometric = bool(self.rotate_degrees or self.scale_range or self.translate_fraction)
        sx = torch.ones(b)
        sy = torch.ones(b)
        if self.flips in ("horizontal", "both"):
            sx = torch.where(flip_h & active, -1.0, 1.0)
        if self.flips in ("vertical", "both"):
            sy = torch.where(flip_v & active, -1.0, 1.0)
        if not geometric:
            angle = torch.zeros(b)
            scale = torch.ones(b)
            shift = torch.zeros(b, 2)
        angle = torch.where(active, angle, 0.0)
        scale = torch.where(active, scale, 1.0)
        shift = torch.where(active[:, None], shift, 0.0)

        out = x
        if geometric or self.flips != "none":
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            theta = torch.stack(
                [
                    torch.stack([cos * sx, -sin * sy, shift[:, 0]], dim=1),
                    torch.stack([sin * sx, cos * sy, shift[:, 1]], dim=1),
                ],
                dim=1,
            ).to(device=x.device, dtype=x.dtype)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.brightness or self.contrast:
            bright = torch.where(active, bright, 0.0).to(x.device, x.dtype).view(b, 1, 1, 1)
            contrast = torch.where(active, contrast, 1.0).to(x.device, x.dtype).view(b, 1, 1, 1)
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = ((out - mean) * contrast + mean + bright).clamp_(0.0, 1.0)
        return out


def resize_batch(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize a ``(B, C, H, W)`` float batch to ``size x size`` (no-op when equal).

    Bilinear, with antialiasing when shrinking.
    """
    if size is None or (x.shape[-2] == size and x.shape[-1] == size):
        return x
    shrink = size < x.shape[-2] or size < x.shape[-1]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def mixup(
    x: torch.Tensor, alpha: float, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Blend a batch with a shuffled copy of itself (mixup).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` float batch (any device and memory format, kept).
    alpha : float
        Concentration of the symmetric Beta distribution of the blending
        weight (> 0; small values keep most images close to one original).
    generator : torch.Generator
        Seeded CPU generator: the weight and the permutation are drawn from it.

    Returns
    -------
    mixed : torch.Tensor
        ``lam * x + (1 - lam) * x[perm]``, shape of ``x``.
    perm : torch.Tensor
        ``(B,)`` int64 permutation on ``x``'s device: the partner of each row, so
        the loss is ``lam * loss(y) + (1 - lam) * loss(y[perm])``.
    lam : float
        Blending weight drawn from ``Beta(alpha, alpha)``.
    """
    if not alpha > 0:
        raise ValueError(f"mixup alpha must be > 0; got {alpha}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return x.mul(lam).add_(x[perm], alpha=1.0 - lam), perm, lam
