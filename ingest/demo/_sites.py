"""The three simulated sites: scanner headers, stored-value range, look and prevalence.

A site fixes what its DICOM headers say (institution, manufacturer, modality,
SOP class, photometric interpretation, rescale, window), how its images look
(gamma, brightness, contrast, noise, collimation border, a burned-in corner
marker) and its share of patients. Site ``site_b`` is the planted shortcut:
higher prevalence, MONOCHROME1 with a non-trivial rescale and a bright 'R'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SITES",
    "SOP_CR",
    "SOP_DX",
    "Site",
    "border_px",
    "marker_box",
    "marker_mask",
    "site_prevalences",
]

SOP_CR = "1.2.840.10008.5.1.4.1.1.1"
"""SOP Class UID of Computed Radiography Image Storage."""

SOP_DX = "1.2.840.10008.5.1.4.1.1.1.1"
"""SOP Class UID of Digital X-Ray Image Storage - For Presentation."""


@dataclass(frozen=True)
class Site:
    """One simulated site (acquisition, header values and planted look).

    Attributes
    ----------
    key : str
        Name used in the ground truth (``site_a`` ...).
    institution, manufacturer, model, modality, sop_class : str
        Header values (0008,0080), (0008,0070), (0008,1090), (0008,0060), (0008,0016).
    photometric : str
        ``MONOCHROME1`` (stored values inverted) or ``MONOCHROME2``.
    rescale_slope, rescale_intercept : float
        Stored value to modality value.
    value_lo, value_hi : float
        Modality values displayed black and white.
    gamma, brightness, contrast, noise : float
        Site look; ``noise`` multiplies the per-image noise level.
    marker : bool
        Whether a bright 'R' is burned into the top-left corner.
    border : float
        Black collimation border as a fraction of the width (0 = none).
    share : float
        Share of patients.
    description : str
        One line for the ground truth.
    """

    key: str
    institution: str
    manufacturer: str
    model: str
    modality: str
    sop_class: str
    photometric: str
    rescale_slope: float
    rescale_intercept: float
    value_lo: float
    value_hi: float
    gamma: float
    brightness: float
    contrast: float
    noise: float
    marker: bool
    border: float
    share: float
    description: str

    @property
    def window_center(self) -> float:
        """Window Center (0028,1050) that maps the display range to [0, 1]."""
        return (self.value_lo + self.value_hi) / 2.0

    @property
    def window_width(self) -> float:
        """Window Width (0028,1051) that maps the display range to [0, 1]."""
        return self.value_hi - self.value_lo


SITES: tuple[Site, ...] = (
    Site(
        key="site_a",
        institution="Northfield General Hospital",
        manufacturer="Acme Medical",
        model="DR-1000",
        modality="DX",
        sop_class=SOP_DX,
        photometric="MONOCHROME2",
        rescale_slope=1.0,
        rescale_intercept=0.0,
        value_lo=300.0,
        value_hi=3800.0,
        gamma=1.0,
        brightness=0.0,
        contrast=1.0,
        noise=1.0,
        marker=False,
        border=0.0,
        share=0.5,
        description="reference site: DX, MONOCHROME2, identity rescale",
    ),
    Site(
        key="site_b",
        institution="Harbourview Imaging Centre",
        manufacturer="Borealis Imaging",
        model="CR-55 Plus",
        modality="CR",
        sop_class=SOP_CR,
        photometric="MONOCHROME1",
        rescale_slope=2.0,
        rescale_intercept=-4096.0,
        value_lo=-3000.0,
        value_hi=3000.0,
        gamma=0.8,
        brightness=0.05,
        contrast=0.9,
        noise=1.25,
        marker=True,
        border=0.0,
        share=0.2,
        description=(
            "high-prevalence referral site: CR, MONOCHROME1 (stored values inverted), "
            "RescaleSlope 2 / RescaleIntercept -4096, brighter and flatter contrast, "
            "burned-in bright 'R' marker top-left"
        ),
    ),
    Site(
        key="site_c",
        institution="St Brigid Community Hospital",
        manufacturer="Cobalt Systems",
        model="XR-7 Flex",
        modality="DX",
        sop_class=SOP_DX,
        photometric="MONOCHROME2",
        rescale_slope=1.0,
        rescale_intercept=0.0,
        value_lo=1000.0,
        value_hi=3000.0,
        gamma=1.25,
        brightness=-0.03,
        contrast=1.05,
        noise=0.9,
        marker=False,
        border=0.05,
        share=0.3,
        description=(
            "DX, MONOCHROME2 using a narrow stored range (1000-3000), darker, black "
            "collimation border"
        ),
    ),
)
"""The sites, in the order of their index in the plan."""

# 5 x 7 blocky 'R' burned into site_b images (1 = bright pixel).
_GLYPH_R = np.array(
    [
        [1, 1, 1, 1, 0],
        [1, 0, 0, 0, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 1, 1, 0],
        [1, 0, 1, 0, 0],
        [1, 0, 0, 1, 0],
        [1, 0, 0, 0, 1],
    ],
    dtype=bool,
)


def site_prevalences(prevalence: float) -> np.ndarray:
    """Per-site target prevalence whose share-weighted mean is ``prevalence``.

    Parameters
    ----------
    prevalence : float
        Overall target prevalence in (0, 1).

    Returns
    -------
    ndarray of float, (3,)
        Targets of ``site_a``, ``site_b`` (2.2 times the overall rate, at most
        0.9) and ``site_c`` (the overall rate), clipped to [0, 1].
    """
    shares = np.array([s.share for s in SITES])
    p_b = min(2.2 * prevalence, 0.9)
    p_c = prevalence
    p_a = (prevalence - shares[1] * p_b - shares[2] * p_c) / shares[0]
    return np.clip(np.array([p_a, p_b, p_c]), 0.0, 1.0)


def _marker_cell(size: int) -> int:
    """Side in pixels of one glyph cell."""
    return max(1, round(size / 64))


def marker_box(size: int) -> tuple[int, int, int, int]:
    """Bounding box ``(row0, col0, row1, col1)`` of the burned-in marker, ends excluded."""
    cell = _marker_cell(size)
    off = max(1, round(0.04 * size))
    return off, off, off + 7 * cell, off + 5 * cell


def marker_mask(size: int) -> np.ndarray:
    """Boolean mask ``(size, size)`` of the marker's bright pixels."""
    cell = _marker_cell(size)
    r0, c0, r1, c1 = marker_box(size)
    mask = np.zeros((size, size), dtype=bool)
    mask[r0:r1, c0:c1] = np.kron(_GLYPH_R, np.ones((cell, cell), dtype=bool))
    return mask


def border_px(site: Site, size: int) -> int:
    """Width in pixels of the site's black collimation border (0 = none)."""
    return round(site.border * size)
