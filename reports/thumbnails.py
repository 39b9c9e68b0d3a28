"""Thumbnails of cache images as small PNG data URIs (downscaled, optionally masked)."""

from __future__ import annotations

import base64
import io

import numpy as np

from audit.masking import apply_mask

__all__ = ["thumbnail_png", "thumbnail_uri"]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    f = np.asarray(img, dtype=np.float32)
    lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
    if hi <= lo:
        return np.zeros(f.shape, dtype=np.uint8)
    return np.clip(np.rint((f - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)


def thumbnail_png(image: np.ndarray, *, max_px: int, variant: str | None = None) -> bytes:
    """One cache image as PNG bytes, at most ``max_px`` on its longest side.

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, H, W)`` with C = 1 or 3, uint8 (or float, scaled to its range).
    max_px : int
        Larger images are downscaled by area averaging; smaller ones are kept.
    variant : str, optional
        A masked variant of :data:`audit.masking.MASKED_VARIANTS` applied first.

    Returns
    -------
    bytes
        An optimised 8-bit PNG (greyscale or RGB).
    """
    from PIL import Image

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected a cache image of shape (C, H, W) with C in (1, 3); got {img.shape}")
    if variant is not None:
        img = apply_mask(img, variant)
    img = _to_uint8(img)
    pil = Image.fromarray(img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1))
    if max(pil.size) > max_px:
        scale = max_px / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))),
                         Image.Resampling.BOX)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def thumbnail_uri(image: np.ndarray, *, max_px: int, variant: str | None = None) -> str:
    """:func:`thumbnail_png` as a ``data:image/png;base64,...`` URI (self-contained HTML)."""
    data = thumbnail_png(image, max_px=max_px, variant=variant)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
