"""Synthetic image phantoms shared by the image-level audit tests."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def smooth_phantoms(n: int, *, size: int = 32, seed: int = 0, sigma: float = 4.0) -> np.ndarray:
    """Smooth random fields with varied brightness and contrast.

    Returns
    -------
    numpy.ndarray
        ``(n, size, size)`` float images in ``[0, 255]``.
    """
    rng = np.random.default_rng(seed)
    f = gaussian_filter(rng.standard_normal((n, size + 8, size + 8)), sigma=(0, sigma, sigma))
    f = f[:, 4:-4, 4:-4]
    f = (f - f.mean(axis=(1, 2), keepdims=True)) / f.std(axis=(1, 2), keepdims=True)
    level = rng.uniform(110, 150, (n, 1, 1))
    contrast = rng.uniform(30, 50, (n, 1, 1))
    return np.clip(level + contrast * f, 0, 255)
