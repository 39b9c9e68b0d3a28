"""Masked variants of an image batch for shortcut analysis (pure tensor functions).

Each fold model re-scores its out-of-fold rows on these variants; the shortcut
checks compare their AUC with the unmasked AUC. If a model still separates the
classes when the anatomy is hidden (``center_masked``) or from the frame alone
(``border_only``), it is reading something other than the anatomy (burnt-in
text, markers, collimation, scanner borders).

The geometry (which box each variant hides) and its fractions are defined once,
in :mod:`audit.masking` (the numpy version that reports and the dashboard use to
show what was hidden); this module imports the fractions from there, so the two
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from audit.masking import BORDER_FRACTION, CENTER_FRACTION, CORNER_FRACTION

__all__ = [
    "BORDER_FRACTION",
    "CENTER_FRACTION",
    "CORNER_FRACTION",
    "MASKED_VARIANTS",
    "apply_mask",
    "border_only",
    "center_masked",
    "corners_masked",
]


def _check(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (B, C, H, W); got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"expected an image batch of shape (B, C, H, W); got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point image batch; got dtype {x.dtype}")


def _mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3), keepdim=True)


def center_masked(x: torch.Tensor, *, fraction: float = CENTER_FRACTION) -> torch.Tensor:
    """Replace the central ``fraction x fraction`` box by the image mean.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` floating-point images.
    fraction : float
        Side fraction of the hidden central box, in ``(0, 1)``.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``, a new tensor.
    """
    _check(x)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1); got {fraction}")
    h, w = x.shape[-2:]
    t, b = round(h * (1 - fraction) / 2), round(h * (1 + fraction) / 2)
    lft, r = round(w * (1 - fraction) / 2), round(w * (1 + fraction) / 2)
    out = x.clone()
    out[:, :, t:b, lft:r] = _mean(x).expand(-1, -1, b - t, r - lft)
    return out


def border_only(x: torch.Tensor, *, width: float = BORDER_FRACTION) -> torch.Tensor:
    """Keep only a frame ``width`` of the side wide; the interior becomes the mean.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` floating-point images.
    width : float
        Frame width as a fraction of the side, in ``(0, 0.5)``.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``, a new tensor.
    """
    _check(x)
    if not 0.0 < width < 0.5:
        raise ValueError(f"width must be in (0, 0.5); got {width}")
    h, w = x.shape[-2:]
    bh, bw = max(1, round(h * width)), max(1, round(w * width))
    out = x.clone()
    out[:, :, bh : h - bh, bw : w - bw] = _mean(x).expand(-1, -1, h - 2 * bh, w - 2 * bw)
    return out


def corners_masked(x: torch.Tensor, *, size: float = CORNER_FRACTION) -> torch.Tensor:
    """Replace four corner squares (side ``size`` of the image side) by the mean.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` floating-point images.
    size : float
        Corner square side as a fraction of the image side, in ``(0, 0.5)``.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``, a new tensor.
    """
    _check(x)
    if not 0.0 < size < 0.5:
        raise ValueError(f"size must be in (0, 0.5); got {size}")
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * size)), max(1, round(w * size))
    mean = _mean(x).expand(-1, -1, ch, cw)
    out = x.clone()
    for rows in (slice(0, ch), slice(h - ch, h)):
        for cols in (slice(0, cw), slice(w - cw, w)):
            out[:, :, rows, cols] = mean
    return out


#: Registry of variant name -> function ``(B, C, H, W) -> (B, C, H, W)``.
MASKED_VARIANTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "center_masked": center_masked,
    "border_only": border_only,
    "corners_masked": corners_masked,
}


def apply_mask(x: torch.Tensor, variant: str) -> torch.Tensor:
    """Apply the masked variant named ``variant`` (see :data:`MASKED_VARIANTS`).

    Raises
    ------
    ValueError
        For an unknown variant name, listing the valid ones.
    """
    try:
        fn = MASKED_VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown masked variant {variant!r}; valid variants are {sorted(MASKED_VARIANTS)}"
        ) from None
    return fn(x)
