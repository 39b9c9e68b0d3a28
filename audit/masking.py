"""Masked variants of images, in numpy: the one definition of their geometry.

Training re-scores each fold's out-of-fold rows on masked images
(``training.masking``, torch) and writes ``oof/masked/<variant>.npy``; the
masking-test check compares those scores with the unmasked ones; reports and the
dashboard show a reader what each variant hides. All three read the fractions
below, so the pictures always match what the model was scored on.

Geometry, for an ``H x W`` image (fractions of the side, rounded to pixels):

``center_masked``
    The central box from 20 % to 80 % of the height and of the width (60 % of
    each side, 36 % of the area) is replaced by the image mean.
``border_only``
    Only a frame 12 % of the side wide is kept; the interior (12 % to 88 %,
    58 % of the area) is replaced by the image mean.
``corners_masked``
    Four corner squares with a side of 15 % of the image side (where scanners
    and technologists put text and markers) are replaced by the image mean.

The mean is per image and per channel, over all pixels of the unmasked image,
so a variant changes no global intensity statistic a model could latch onto.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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

#: Side fraction of the central box hidden by :func:`center_masked`.
CENTER_FRACTION = 0.60
#: Width of the frame kept by :func:`border_only`, as a fraction of the side.
BORDER_FRACTION = 0.12
#: Side of each corner square hidden by :func:`corners_masked`, as a fraction.
CORNER_FRACTION = 0.15


def _check(x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"expected a numpy.ndarray of shape (..., H, W); got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"expected images of shape (..., H, W); got shape {x.shape}")
    if x.dtype.kind not in "uif":
        raise TypeError(f"expected numeric images; got dtype {x.dtype}")
    return x


def _fill(x: np.ndarray) -> np.ndarray:
    """Per-image, per-channel mean over the last two axes, in ``x``'s dtype (rounded for ints)."""
    mean = x.mean(axis=(-2, -1), keepdims=True, dtype=np.float64)
    if x.dtype.kind in "ui":
        mean = np.rint(mean)
    return mean.astype(x.dtype)


def center_masked(x: np.ndarray, *, fraction: float = CENTER_FRACTION) -> np.ndarray:
    """Replace the central ``fraction x fraction`` box by the image mean.

    Parameters
    ----------
    x : numpy.ndarray
        ``(..., H, W)`` images, e.g. ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
    fraction : float
        Side fraction of the hidden central box, in ``(0, 1)``.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype, a new array.

    Raises
    ------
    ValueError
        When ``fraction`` is outside ``(0, 1)`` or ``x`` has fewer than 2 axes.
    """
    _check(x)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1); got {fraction}")
    h, w = x.shape[-2:]
    t, b = round(h * (1 - fraction) / 2), round(h * (1 + fraction) / 2)
    lft, r = round(w * (1 - fraction) / 2), round(w * (1 + fraction) / 2)
    out = x.copy()
    out[..., t:b, lft:r] = _fill(x)
    return out


def border_only(x: np.ndarray, *, width: float = BORDER_FRACTION) -> np.ndarray:
    """Keep only a frame ``width`` of the side wide; the interior becomes the mean.

    Parameters
    ----------
    x : numpy.ndarray
        ``(..., H, W)`` images.
    width : float
        Frame width as a fraction of the side, in ``(0, 0.5)``.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype, a new array.
    """
    _check(x)
    if not 0.0 < width < 0.5:
        raise ValueError(f"width must be in (0, 0.5); got {width}")
    h, w = x.shape[-2:]
    bh, bw = max(1, round(h * width)), max(1, round(w * width))
    out = x.copy()
    out[..., bh : h - bh, bw : w - bw] = _fill(x)
    return out


def corners_masked(x: np.ndarray, *, size: float = CORNER_FRACTION) -> np.ndarray:
    """Replace four corner squares (side ``size`` of the image side) by the mean.

    Parameters
    ----------
    x : numpy.ndarray
        ``(..., H, W)`` images.
    size : float
        Corner square side as a fraction of the image side, in ``(0, 0.5)``.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype, a new array.
    """
    _check(x)
    if not 0.0 < size < 0.5:
        raise ValueError(f"size must be in (0, 0.5); got {size}")
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * size)), max(1, round(w * size))
    fill = _fill(x)
    out = x.copy()
    for rows in (slice(0, ch), slice(h - ch, h)):
        for cols in (slice(0, cw), slice(w - cw, w)):
            out[..., rows, cols] = fill
    return out


#: Registry of variant name -> function ``(..., H, W) -> (..., H, W)``; the same names as
#: ``training.masking.MASKED_VARIANTS`` and ``oof/masked/<variant>.npy``.
MASKED_VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "center_masked": center_masked,
    "border_only": border_only,
    "corners_masked": corners_masked,
}


def apply_mask(x: np.ndarray, variant: str) -> np.ndarray:
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
