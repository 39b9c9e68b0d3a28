"""A site's look and stored values, near-duplicate pixels, and rendering one chunk.

Display-space phantoms (:mod:`ingest.demo._phantom`) get their site's gamma,
brightness, contrast, collimation border and burned-in marker, then become
12-bit stored values through the site's window, rescale and photometric
interpretation. A near duplicate goes back to display space, moves by 1-2
pixels (marker and border move with it), changes brightness a little and gets
a little extra noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.demo._phantom import render
from ingest.demo._sites import SITES, Site, border_px, marker_mask

__all__ = [
    "NearSpec",
    "display_to_stored",
    "draw_near_spec",
    "near_duplicate",
    "render_chunk",
    "stored_to_display",
    "to_site_display",
]

_MAX_STORED = 4095  # BitsStored 12
_NEAR_MAX_SHIFT = 2  # pixels, each axis
_NEAR_NOISE = 0.004  # display units


def to_site_display(
    display: np.ndarray, site: Site, size: int, marker: np.ndarray | None = None
) -> np.ndarray:
    """Apply the site look: gamma, brightness, contrast, collimation border, marker.

    Parameters
    ----------
    display : ndarray of float32, (B, size, size)
        Phantoms in [0, 1].
    site : Site
        The site of every image in the batch.
    size : int
        Rows = columns.
    marker : ndarray of bool, (B,), optional
        Which images get the marker; default: all of them when ``site.marker``.

    Returns
    -------
    ndarray of float32, (B, size, size)
        In [0, 1].
    """
    out = np.clip(site.brightness + site.contrast * display ** np.float32(site.gamma), 0.0, 1.0)
    border = border_px(site, size)
    if border:
        out[:, :border, :] = 0.0
        out[:, -border:, :] = 0.0
        out[:, :, :border] = 0.0
        out[:, :, -border:] = 0.0
    if marker is None:
        marker = np.full(out.shape[0], site.marker)
    if marker.any():
        mr, mc = np.nonzero(marker_mask(size))
        out[np.flatnonzero(marker)[:, None], mr, mc] = 1.0
    return out.astype(np.float32, copy=False)


def display_to_stored(display: np.ndarray, site: Site) -> np.ndarray:
    """Display values in [0, 1] to the site's stored values.

    Parameters
    ----------
    display : ndarray of float, any shape
        0 = black, 1 = white.
    site : Site
        Gives the window, rescale and photometric interpretation.

    Returns
    -------
    ndarray of uint16, same shape
        Rounded and clipped to [0, 4095].
    """
    span = site.value_hi - site.value_lo
    if site.photometric == "MONOCHROME1":
        modality = site.value_hi - display.astype(np.float64) * span
    else:
        modality = site.value_lo + display.astype(np.float64) * span
    stored = np.rint((modality - site.rescale_intercept) / site.rescale_slope)
    return np.clip(stored, 0, _MAX_STORED).astype(np.uint16)


def stored_to_display(stored: np.ndarray, site: Site) -> np.ndarray:
    """Inverse of :func:`display_to_stored` (without clipping): float64, same shape."""
    modality = stored.astype(np.float64) * site.rescale_slope + site.rescale_intercept
    span = site.value_hi - site.value_lo
    if site.photometric == "MONOCHROME1":
        return (site.value_hi - modality) / span
    return (modality - site.value_lo) / span


@dataclass(frozen=True)
class NearSpec:
    """How a near duplicate differs from its source.

    Attributes
    ----------
    shift : tuple of int
        ``(rows, columns)`` in [-2, 2], not both 0.
    gain, offset : float
        Display-space brightness change.
    noise_seed : int
        Seed of the extra noise.
    """

    shift: tuple[int, int]
    gain: float
    offset: float
    noise_seed: int


def draw_near_spec(rng: np.random.Generator) -> NearSpec:
    """Draw one :class:`NearSpec` (the shift is redrawn until it is non-zero)."""
    while True:
        shift = rng.integers(-_NEAR_MAX_SHIFT, _NEAR_MAX_SHIFT + 1, size=2)
        if shift.any():
            break
    return NearSpec(
        shift=(int(shift[0]), int(shift[1])),
        gain=float(rng.uniform(0.97, 1.03)),
        offset=float(rng.uniform(-0.02, 0.02)),
        noise_seed=int(rng.integers(0, 2**63 - 1)),
    )


def near_duplicate(stored: np.ndarray, site: Site, spec: NearSpec) -> np.ndarray:
    """Shift by 1-2 px (edge padded), change brightness a little, add a little noise.

    Parameters
    ----------
    stored : ndarray of uint16, (size, size)
        The source image's stored values.
    site : Site
        The source's site.
    spec : NearSpec
        The change.

    Returns
    -------
    ndarray of uint16, (size, size)
    """
    dr, dc = spec.shift
    display = stored_to_display(stored, site)
    pad = _NEAR_MAX_SHIFT
    padded = np.pad(display, pad, mode="edge")
    n = display.shape[0]
    moved = padded[pad - dr : pad - dr + n, pad - dc : pad - dc + n] * spec.gain + spec.offset
    moved = moved + np.random.default_rng(spec.noise_seed).normal(0.0, _NEAR_NOISE, moved.shape)
    return display_to_stored(np.clip(moved, 0.0, 1.0), site)


def render_chunk(
    params: dict[str, np.ndarray],
    nodule: np.ndarray,
    site_of: np.ndarray,
    size: int,
    rng: np.random.Generator,
    marker: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Render one chunk and convert each image to its site's stored values.

    Parameters
    ----------
    params : dict of str to ndarray, each (B,)
        Per-image parameters (:func:`ingest.demo._phantom.draw_acquisition`).
    nodule : ndarray of bool, (B,)
        Whether each image contains a nodule.
    site_of : ndarray of int, (B,)
        Index into :data:`SITES` of each image.
    size : int
        Rows = columns.
    rng : numpy.random.Generator
        The chunk's own noise stream.
    marker : ndarray of bool, (B,), optional
        Which images carry the marker; default: those of the marker site.

    Returns
    -------
    list of ndarray of uint16, each (size, size)
        In the chunk's row order.
    """
    noise = rng.standard_normal((nodule.size, size, size), dtype=np.float32)
    display = render(params, nodule, size, noise)
    out: list[np.ndarray] = [np.empty(0, np.uint16)] * nodule.size
    for s, site in enumerate(SITES):
        members = np.flatnonzero(site_of == s)
        if members.size:
            mark = None if marker is None else marker[members]
            stored = display_to_stored(to_site_display(display[members], site, size, mark), site)
            for m, arr in zip(members, stored):
                out[int(m)] = arr
    return out
