"""Seeded generator of a synthetic chest-X-ray-like DICOM dataset with planted problems.

The generator writes real DICOM files (explicit VR little endian, with preamble
and file meta information) of 12-bit grayscale chest-radiograph phantoms, a
``labels.csv`` with the *recorded* (noisy) label of every file, and a
``ground_truth.json`` sidecar that lists exactly what was planted: label flips,
exact / near / cross-patient duplicates, corrupted files, a non-image DICOM, the
true per-site prevalence, the site-specific acquisition differences (one site
stores MONOCHROME1 with a non-trivial rescale and burns a bright text-like
marker into a corner) and the position of every nodule.

Tests and benchmarks use the ground truth to check that the audit finds the
planted problems. The output is a pure function of :class:`DemoConfig`: the same
configuration gives byte-identical files (no wall-clock time reaches any file;
dates are derived from the seed).

Layout written under ``out_dir``::

    dicom/<patient folder>/<opaque hex>.dcm   # folder = running index, no PHI
    labels.csv                                # path, label (recorded class name)
    ground_truth.json                         # see generate_demo

Every path in ``labels.csv`` and ``ground_truth.json`` is relative to
``dicom/`` and uses POSIX separators.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "CLASS_NAMES",
    "GENERATOR_NAME",
    "GROUND_TRUTH_VERSION",
    "DemoConfig",
    "DemoDataset",
    "generate_demo",
    "load_ground_truth",
]

_LOG = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, str] = ("normal", "nodule")
"""Class names; index 0 is the negative class, index 1 the positive class."""

GENERATOR_NAME = "medaudit.demo"
"""Value of the ``generator`` key of ``ground_truth.json``."""

GROUND_TRUTH_VERSION = 1
"""Schema version of ``ground_truth.json``."""

_LABELS_FILE = "labels.csv"
_GROUND_TRUTH_FILE = "ground_truth.json"
_DICOM_DIR = "dicom"

_SOP_CR = "1.2.840.10008.5.1.4.1.1.1"
_SOP_DX = "1.2.840.10008.5.1.4.1.1.1.1"
_SOP_BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

# Share of patients with follow-up images, and how many images they have.
_FOLLOW_UP_FRACTION = 0.21
_FOLLOW_UP_IMAGES = (2, 4)  # inclusive range
_AP_FRACTION = 0.15
# Nodule: diameter (full width at half maximum) as a fraction of image width,
# and peak contrast in display units (0 = black, 1 = white).
_NODULE_DIAMETER = (0.03, 0.08)
_NODULE_CONTRAST = (0.14, 0.26)
_FIELD_OF_VIEW_MM = 430.0
_BASE_DATE = _dt.date(2016, 1, 1)

_MSG_CONFIG_TYPE = "config must be a DemoConfig; got {got!r}"
_MSG_NOT_EMPTY = (
    "output directory {path} already holds DICOM files; generate_demo writes into an "
    "empty or new directory so that labels.csv and ground_truth.json match the files "
    "exactly. Choose a new directory or delete the old one."
)
_MSG_TOO_FEW = (
    "DemoConfig asks for {wanted} duplicated source images but only {have} images are "
    "generated from n_patients={n}; raise n_patients or lower the n_*_duplicates counts."
)
_MSG_BAD_GT = (
    "{path} is not a medaudit demo ground truth: expected generator={gen!r} and "
    "version={ver}, got generator={got_gen!r} and version={got_ver!r}"
)


@dataclass(frozen=True)
class DemoConfig:
    """Configuration of the synthetic demo dataset.

    Parameters
    ----------
    n_patients : int, default 1400
        Number of patients. About 20 % of them have 2 to 4 images (follow-ups),
        so the default yields about 2,000 images. Cross-patient duplicates add
        one extra (mis-filed) patient each.
    image_size : int, default 128
        Stored DICOM Rows = Columns.
    prevalence : float, default 0.25
        Overall positive ('nodule') rate of the TRUE labels over the readable
        images. Sites differ strongly around this value.
    screening_prevalence : float, default 0.05
        Documented deployment prevalence, recorded in the ground truth for
        later recalibration checks; it does not affect the images.
    label_noise_fn_rate : float, default 0.12
        Fraction of true-positive images whose recorded label is 'normal'.
    label_noise_fp_rate : float, default 0.03
        Fraction of true-negative images whose recorded label is 'nodule'.
    n_exact_duplicates : int, default 12
        Pixel-identical copies saved as a second file of the same patient.
    n_near_duplicates : int, default 12
        Copies of the same patient with a 1-2 pixel shift, a small brightness
        change and a little extra noise.
    n_cross_patient_duplicates : int, default 6
        Pixel-identical copies filed under a different (new) patient ID.
    n_corrupted : int, default 4
        Unreadable files: DICOMs truncated inside the pixel data and, when
        ``n_corrupted >= 2``, one file of random bytes with a ``.dcm`` name.
    n_non_image : int, default 1
        DICOM files without pixel data (Basic Text SR documents).
    seed : int, default 0
        Seed of every random choice.
    """

    n_patients: int = 1400
    image_size: int = 128
    prevalence: float = 0.25
    screening_prevalence: float = 0.05
    label_noise_fn_rate: float = 0.12
    label_noise_fp_rate: float = 0.03
    n_exact_duplicates: int = 12
    n_near_duplicates: int = 12
    n_cross_patient_duplicates: int = 6
    n_corrupted: int = 4
    n_non_image: int = 1
    seed: int = 0


@dataclass(frozen=True)
class DemoDataset:
    """Paths of a generated demo dataset.

    Attributes
    ----------
    root : Path
        The output directory.
    dicom_dir : Path
        ``root / "dicom"``; every path in the CSV and JSON is relative to it.
    labels_csv : Path
        ``root / "labels.csv"`` with columns ``path`` and ``label`` (the recorded,
        possibly flipped, class name). SOP Instance UIDs are left out on purpose:
        ingestion treats such a column as a direct identifier.
    ground_truth : Path
        ``root / "ground_truth.json"``, read it with :func:`load_ground_truth`.
    """

    root: Path
    dicom_dir: Path
    labels_csv: Path
    ground_truth: Path


# --------------------------------------------------------------------------- sites


@dataclass(frozen=True)
class _Site:
    key: str
    institution: str
    manufacturer: str
    model: str
    modality: str
    sop_class: str
    photometric: str
    rescale_slope: float
    rescale_intercept: float
    value_lo: float  # modality value displayed black
    value_hi: float  # modality value displayed white
    gamma: float
    brightness: float
    contrast: float
    noise: float
    marker: bool
    border: float  # collimation border as a fraction of the width (0 = none)
    share: float  # share of patients
    description: str

    @property
    def window_center(self) -> float:
        return (self.value_lo + self.value_hi) / 2.0

    @property
    def window_width(self) -> float:
        return self.value_hi - self.value_lo


_SITES: tuple[_Site, ...] = (
    _Site(
        key="site_a",
        institution="Northfield General Hospital",
        manufacturer="Acme Medical",
        model="DR-1000",
        modality="DX",
        sop_class=_SOP_DX,
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
    _Site(
        key="site_b",
        institution="Harbourview Imaging Centre",
        manufacturer="Borealis Imaging",
        model="CR-55 Plus",
        modality="CR",
        sop_class=_SOP_CR,
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
    _Site(
        key="site_c",
        institution="St Brigid Community Hospital",
        manufacturer="Cobalt Systems",
        model="XR-7 Flex",
        modality="DX",
        sop_class=_SOP_DX,
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


def _site_prevalences(prevalence: float) -> np.ndarray:
    """Per-site target prevalence whose share-weighted mean is ``prevalence``."""
    shares = np.array([s.share for s in _SITES])
    p_b = min(2.2 * prevalence, 0.9)
    p_c = prevalence
    p_a = (prevalence - shares[1] * p_b - shares[2] * p_c) / shares[0]
    return np.clip(np.array([p_a, p_b, p_c]), 0.0, 1.0)


def _marker_box(size: int) -> tuple[int, int, int, int]:
    cell = max(1, round(size / 64))
    off = max(1, round(0.04 * size))
    return off, off, off + 7 * cell, off + 5 * cell


def _marker_mask(size: int) -> np.ndarray:
    cell = max(1, round(size / 64))
    r0, c0, r1, c1 = _marker_box(size)
    mask = np.zeros((size, size), dtype=bool)
    mask[r0:r1, c0:c1] = np.kron(_GLYPH_R, np.ones((cell, cell), dtype=bool))
    return mask


def _border_px(site: _Site, size: int) -> int:
    return round(site.border * size)


# ------------------------------------------------------------------ internal records


@dataclass
class _Patient:
    index: int
    site: int
    n_images: int
    label: int
    sex: str
    age: int
    birth_date: _dt.date
    first_date: _dt.date
    patient_id: str = ""
    patient_name: str = ""
    folder: str = ""


@dataclass
class _Image:
    index: int
    patient: int  # filed under this patient
    true_patient: int  # the patient actually imaged
    kind: str
    visit: int
    true_label: int
    date: _dt.date
    view: str
    study_key: str
    series_key: str
    source: int | None = None
    render_row: int | None = None  # row in the rendered batch (for rendered images)
    pixels: np.ndarray | None = None  # stored uint16 values
    lesion: dict[str, float] | None = None
    recorded_label: int = -1
    path: str = ""
    sop_uid: str = ""
    instance_number: int = 1

    @property
    def has_pixels(self) -> bool:
        return self.kind in _VALID_KINDS


_VALID_KINDS = frozenset(
    {"original", "follow_up", "exact_duplicate", "near_duplicate", "cross_patient_duplicate"}
)


# ------------------------------------------------------------------ validation


def _validate_config(config: DemoConfig) -> DemoConfig:
    if not isinstance(config, DemoConfig):
        raise TypeError(_MSG_CONFIG_TYPE.format(got=type(config).__name__))
    problems: list[str] = []
    ints = {
        "n_patients": 2,
        "image_size": 32,
        "n_exact_duplicates": 0,
        "n_near_duplicates": 0,
        "n_cross_patient_duplicates": 0,
        "n_corrupted": 0,
        "n_non_image": 0,
        "seed": 0,
    }
    for name, minimum in ints.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"DemoConfig.{name} must be an int; got {type(value).__name__}")
        if value < minimum:
            problems.append(f"DemoConfig.{name} must be >= {minimum}; got {value}")
    if config.image_size > 4096:
        problems.append(f"DemoConfig.image_size must be <= 4096; got {config.image_size}")
    rates = {
        "prevalence": (0.0, 1.0, False),
        "screening_prevalence": (0.0, 1.0, False),
        "label_noise_fn_rate": (0.0, 1.0, True),
        "label_noise_fp_rate": (0.0, 1.0, True),
    }
    for name, (lo, hi, closed_lo) in rates.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise TypeError(f"DemoConfig.{name} must be a float; got {type(value).__name__}")
        ok = (lo <= value if closed_lo else lo < value) and value < hi
        if not ok or not math.isfinite(value):
            bracket = "[" if closed_lo else "("
            problems.append(f"DemoConfig.{name} must be in {bracket}{lo}, {hi}); got {value}")
    if problems:
        raise ValueError("invalid DemoConfig: " + "; ".join(problems))
    # Plain Python numbers, so that the config round-trips through JSON.
    return dataclasses.replace(
        config,
        **{name: int(getattr(config, name)) for name in ints},
        **{name: float(getattr(config, name)) for name in rates},
    )


# ------------------------------------------------------------------ phantom rendering


def _smooth_step(z: np.ndarray, width: float) -> np.ndarray:
    # Clipping keeps tanh on its fast path (saturated anyway beyond |9|).
    return 0.5 * (1.0 + np.tanh(np.clip(z / np.float32(width), -9.0, 9.0)))


def _neg_exp(z: np.ndarray) -> np.ndarray:
    """``exp(-z)`` for ``z >= 0``, clipped so no subnormal (slow) results occur."""
    return np.exp(-np.minimum(z, np.float32(30.0)))


def _lung_radius(
    x: np.ndarray, y: np.ndarray, side: np.ndarray | float, p: dict[str, np.ndarray]
) -> np.ndarray:
    """Normalised radius of one lung field (< 1 inside); the apex is narrower."""
    lx = x - side * p["lung_x"]
    ly = y - p["lung_y"]
    t = np.clip(ly / p["lung_b"], -1.0, 1.0)
    half_width = p["lung_a"] * (0.7 + 0.15 * (t + 1.0))
    return (lx / half_width) ** 2 + (ly / p["lung_b"]) ** 2


def _heart_radius(x: np.ndarray, y: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    return ((x - p["heart_x"]) / p["heart_a"]) ** 2 + ((y - p["heart_y"]) / p["heart_b"]) ** 2


def _draw_anatomy(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-patient anatomy (shape ``(n,)`` each), in normalised [-1, 1] units."""
    u = rng.uniform
    p = {
        "theta": np.clip(rng.normal(0.0, math.radians(2.0), n), -0.09, 0.09),
        "dx": rng.normal(0.0, 0.03, n),
        "dy": rng.normal(0.0, 0.03, n),
        "scale": u(0.92, 1.06, n),
        "body_ax": u(0.84, 0.97, n),
        "body_ay": u(1.15, 1.35, n),
        "lung_x": u(0.31, 0.36, n),
        "lung_y": u(-0.12, -0.03, n),
        "lung_a": u(0.24, 0.29, n),
        "lung_b": u(0.55, 0.65, n),
        "lung_depth": u(0.28, 0.38, n),
        "heart_x": u(0.10, 0.17, n),
        "heart_y": u(0.30, 0.38, n),
        "heart_a": u(0.30, 0.36, n),
        "heart_b": u(0.22, 0.28, n),
        "rib_period": u(0.15, 0.19, n),
        "rib_phase": u(0.0, 1.0, n),
        "rib_slope": u(0.45, 0.70, n),
        "rib_curv": u(0.25, 0.50, n),
        "rib_amp": u(0.05, 0.08, n),
        "clav_y": u(-0.80, -0.70, n),
    }
    # A nodule site inside a lung field, drawn for every patient so that the
    # anatomy stream does not depend on the labels (rejection sampling).
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    k = 64
    cx = side[:, None] * p["lung_x"][:, None] + rng.uniform(-1, 1, (n, k)) * p["lung_a"][:, None]
    cy = p["lung_y"][:, None] + rng.uniform(-1, 1, (n, k)) * p["lung_b"][:, None]
    sub = {name: v[:, None] for name, v in p.items()}
    r_lung = _lung_radius(cx, cy, side[:, None], sub)
    r_heart = _heart_radius(cx, cy, sub)
    ok = (r_lung < 0.55) & (r_heart > 1.3)
    first = np.where(ok.any(axis=1), ok.argmax(axis=1), 0)
    rows = np.arange(n)
    p["nod_x"] = np.where(ok.any(axis=1), cx[rows, first], side * p["lung_x"])
    p["nod_y"] = np.where(ok.any(axis=1), cy[rows, first], p["lung_y"])
    p["nod_diam"] = u(*_NODULE_DIAMETER, n) * 2.0  # FWHM in normalised units
    p["nod_amp"] = u(*_NODULE_CONTRAST, n)
    return p


def _draw_acquisition(
    rng: np.random.Generator,
    base: dict[str, np.ndarray],
    patient: np.ndarray,
    follow_up: np.ndarray,
    ap_view: np.ndarray,
    noise_factor: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-image parameters: patient anatomy plus acquisition and follow-up changes."""
    n = patient.size
    p = {name: v[patient].copy() for name, v in base.items()}
    f = follow_up.astype(float)
    p["theta"] += f * rng.normal(0.0, math.radians(2.5), n)
    p["dx"] += f * rng.normal(0.0, 0.05, n)
    p["dy"] += f * rng.normal(0.0, 0.05, n)
    p["scale"] *= 1.0 + f * rng.normal(0.0, 0.03, n)
    p["lung_b"] *= 1.0 + f * rng.normal(0.0, 0.04, n)
    p["nod_diam"] *= 1.0 + f * rng.uniform(0.0, 0.15, n)  # slow growth
    ap = ap_view.astype(float)
    p["heart_a"] *= 1.0 + 0.12 * ap
    p["heart_b"] *= 1.0 + 0.10 * ap
    p["scale"] *= 1.0 + 0.03 * ap
    p["gain"] = rng.uniform(0.92, 1.08, n)
    p["offset"] = rng.uniform(-0.03, 0.03, n)
    p["lf_u"] = rng.normal(0.0, 0.025, n)
    p["lf_v"] = rng.normal(0.0, 0.025, n)
    p["lf_r"] = rng.normal(0.0, 0.02, n)
    p["lf_c"] = rng.normal(0.0, 0.02, n)
    p["lf_fu"] = rng.uniform(-1.5, 1.5, n)
    p["lf_fv"] = rng.uniform(-1.5, 1.5, n)
    p["lf_phi"] = rng.uniform(0.0, 2 * math.pi, n)
    p["noise"] = rng.uniform(0.022, 0.032, n) * noise_factor
    return p


def _render(
    p: dict[str, np.ndarray], nodule: np.ndarray, size: int, noise: np.ndarray
) -> np.ndarray:
    """Render display-space phantoms in [0, 1].

    Parameters
    ----------
    p : dict of str to ndarray, each (B,)
        Per-image parameters from :func:`_draw_acquisition`.
    nodule : ndarray of bool, (B,)
        Whether the image contains a nodule.
    size : int
        Rows = columns.
    noise : ndarray of float32, (B, size, size)
        Standard-normal noise.

    Returns
    -------
    ndarray of float32, (B, size, size)
    """
    f32 = np.float32
    q = {k: np.asarray(v, dtype=f32)[:, None, None] for k, v in p.items()}
    grid = np.linspace(-1.0, 1.0, size, dtype=f32)
    uu = grid[None, None, :]
    vv = grid[None, :, None]
    cos_t, sin_t = np.cos(q["theta"]), np.sin(q["theta"])
    du, dv = uu - q["dx"], vv - q["dy"]
    x = (cos_t * du + sin_t * dv) / q["scale"]
    y = (-sin_t * du + cos_t * dv) / q["scale"]
    ax = np.abs(x)

    body_r = (x / q["body_ax"]) ** 2 + ((y - f32(0.15)) / q["body_ay"]) ** 2
    body = _smooth_step(1.0 - body_r, 0.06)
    tissue = body * (f32(0.42) + f32(0.18) * np.sqrt(np.clip(1.0 - body_r, 0.0, 1.0)))

    # Both lung fields at once: they mirror each other about x = 0.
    lungs = _smooth_step(1.0 - _lung_radius(ax, y, f32(1.0), q), 0.12)
    heart = _smooth_step(1.0 - _heart_radius(x, y, q), 0.15)
    xs = (x / f32(0.085)) ** 2
    spine = _neg_exp(xs * xs) * body
    vertebrae = f32(0.85) + f32(0.15) * (0.5 + 0.5 * np.cos(f32(2 * math.pi / 0.105) * y))
    phase = (y - q["rib_slope"] * ax + q["rib_curv"] * x * x) / q["rib_period"] + q["rib_phase"]
    ribs = 0.5 + 0.5 * np.cos(f32(2 * math.pi) * phase)
    ribs *= ribs
    ribs *= ribs
    ribs *= ribs  # cos^16 of the half angle: narrow bright bands
    ribs = q["rib_amp"] * ribs * (f32(0.35) + f32(0.65) * lungs) * body
    clav_center = q["clav_y"] + f32(0.22) * ax
    clav = _neg_exp(((y - clav_center) / f32(0.03)) ** 2)
    clav = f32(0.08) * clav * _smooth_step(0.65 - ax, 0.05) * _smooth_step(ax - 0.06, 0.03)

    img = f32(0.04) + tissue - q["lung_depth"] * lungs * (1.0 - f32(0.75) * heart)
    img += f32(0.06) * heart * body + f32(0.2) * spine * vertebrae + ribs + clav

    pos = np.flatnonzero(nodule)
    if pos.size:
        sigma = q["nod_diam"][pos] / f32(2.0 * math.sqrt(2.0 * math.log(2.0)))
        r2 = (x[pos] - q["nod_x"][pos]) ** 2 + (y[pos] - q["nod_y"][pos]) ** 2
        img[pos] += q["nod_amp"][pos] * _neg_exp(r2 / (2.0 * sigma * sigma))

    img += q["lf_u"] * uu + q["lf_v"] * vv + q["lf_r"] * (uu * uu + vv * vv)
    img += q["lf_c"] * np.cos(f32(math.pi) * (q["lf_fu"] * uu + q["lf_fv"] * vv) + q["lf_phi"])
    img = q["gain"] * img + q["offset"]
    img += q["noise"] * np.sqrt(np.clip(img, 0.0, 1.0) + f32(0.05)) * noise
    return np.clip(img, 0.0, 1.0, out=img)


def _lesion_record(p: dict[str, np.ndarray], i: int, size: int) -> dict[str, float]:
    """Nodule centre / size in stored-pixel coordinates of image ``i``."""
    c, s = math.cos(p["theta"][i]), math.sin(p["theta"][i])
    nx, ny, sc = p["nod_x"][i], p["nod_y"][i], p["scale"][i]
    u = p["dx"][i] + sc * (c * nx - s * ny)
    v = p["dy"][i] + sc * (s * nx + c * ny)
    half = (size - 1) / 2.0
    diam = p["nod_diam"][i] * sc * half
    return {
        "row": round(float((v + 1.0) * half), 3),
        "col": round(float((u + 1.0) * half), 3),
        "diameter_px": round(float(diam), 3),
        "sigma_px": round(float(diam / (2.0 * math.sqrt(2.0 * math.log(2.0)))), 3),
        "peak_contrast": round(float(p["nod_amp"][i] * p["gain"][i]), 4),
    }


def _to_site_display(display: np.ndarray, site: _Site, size: int) -> np.ndarray:
    """Site look: gamma, brightness, contrast, collimation border, burned-in marker."""
    out = np.clip(site.brightness + site.contrast * display ** np.float32(site.gamma), 0.0, 1.0)
    border = _border_px(site, size)
    if border:
        out[:, :border, :] = 0.0
        out[:, -border:, :] = 0.0
        out[:, :, :border] = 0.0
        out[:, :, -border:] = 0.0
    if site.marker:
        out[:, _marker_mask(size)] = 1.0
    return out.astype(np.float32, copy=False)


def _display_to_stored(display: np.ndarray, site: _Site) -> np.ndarray:
    span = site.value_hi - site.value_lo
    if site.photometric == "MONOCHROME1":
        modality = site.value_hi - display.astype(np.float64) * span
    else:
        modality = site.value_lo + display.astype(np.float64) * span
    stored = np.rint((modality - site.rescale_intercept) / site.rescale_slope)
    return np.clip(stored, 0, 4095).astype(np.uint16)


def _stored_to_display(stored: np.ndarray, site: _Site) -> np.ndarray:
    modality = stored.astype(np.float64) * site.rescale_slope + site.rescale_intercept
    span = site.value_hi - site.value_lo
    if site.photometric == "MONOCHROME1":
        return (site.value_hi - modality) / span
    return (modality - site.value_lo) / span


@dataclass(frozen=True)
class _NearSpec:
    shift: tuple[int, int]  # rows, columns
    gain: float
    offset: float
    noise_seed: int


def _draw_near_spec(rng: np.random.Generator) -> _NearSpec:
    while True:
        shift = rng.integers(-2, 3, size=2)
        if shift.any():
            break
    return _NearSpec(
        shift=(int(shift[0]), int(shift[1])),
        gain=float(rng.uniform(0.97, 1.03)),
        offset=float(rng.uniform(-0.02, 0.02)),
        noise_seed=int(rng.integers(0, 2**63 - 1)),
    )


def _near_duplicate(stored: np.ndarray, site: _Site, spec: _NearSpec) -> np.ndarray:
    """Shift by 1-2 px (edge padded), change brightness a little, add a little noise."""
    dr, dc = spec.shift
    display = _stored_to_display(stored, site)
    pad = 2
    padded = np.pad(display, pad, mode="edge")
    n = display.shape[0]
    moved = padded[pad - dr : pad - dr + n, pad - dc : pad - dc + n] * spec.gain + spec.offset
    moved = moved + np.random.default_rng(spec.noise_seed).normal(0.0, 0.004, moved.shape)
    return _display_to_stored(np.clip(moved, 0.0, 1.0), site)


def _render_chunk(
    params: dict[str, np.ndarray],
    nodule: np.ndarray,
    site_of: np.ndarray,
    size: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Render one chunk and convert each image to its site's stored values."""
    noise = rng.standard_normal((nodule.size, size, size), dtype=np.float32)
    display = _render(params, nodule, size, noise)
    out: list[np.ndarray] = [np.empty(0, np.uint16)] * nodule.size
    for s, site in enumerate(_SITES):
        members = np.flatnonzero(site_of == s)
        if members.size:
            stored = _display_to_stored(_to_site_display(display[members], site, size), site)
            for m, arr in zip(members, stored):
                out[int(m)] = arr
    return out


def _assign_uids(
    images: list[_Image], digest: str, rng: np.random.Generator
) -> dict[int, dict[str, str]]:
    """SOP/Study/Series UIDs, accession and study numbers, series numbers, time of day."""
    studies: dict[str, dict[str, str]] = {}
    series_numbers: dict[str, dict[str, int]] = {}
    headers: dict[int, dict[str, str]] = {}
    for img in images:
        if img.kind == "corrupted_not_dicom":
            continue
        img.sop_uid = _uid(digest, "sop", img.index)
        if img.study_key not in studies:
            n = len(studies) + 1
            hh, mm, ss = (
                int(rng.integers(7, 19)),
                int(rng.integers(0, 60)),
                int(rng.integers(0, 60)),
            )
            studies[img.study_key] = {
                "study": _uid(digest, "study", img.study_key),
                "accession": f"DEMOACC{n:07d}",
                "study_id": f"{n:06d}",
                "time": f"{hh:02d}{mm:02d}{ss:02d}",
            }
            series_numbers[img.study_key] = {}
        numbers = series_numbers[img.study_key]
        numbers.setdefault(img.series_key, len(numbers) + 1)
        headers[img.index] = {
            **studies[img.study_key],
            "series": _uid(digest, "series", img.series_key),
            "series_number": str(numbers[img.series_key]),
        }
    return headers


# ------------------------------------------------------------------ cohort


def _assign_labels(
    patients: list[_Patient], site_prev: np.ndarray, prevalence: float, rng: np.random.Generator
) -> None:
    """Per-patient labels so that image-level site prevalences hit their targets."""
    n_img = np.array([p.n_images for p in patients])
    site = np.array([p.site for p in patients])
    per_site = np.array([n_img[site == s].sum() for s in range(len(_SITES))], dtype=float)
    raw = site_prev * per_site
    total_target = prevalence * per_site.sum()
    targets = np.minimum(raw * (total_target / max(raw.sum(), 1e-12)), per_site)
    for s in range(len(_SITES)):
        members = np.flatnonzero(site == s)
        count = 0
        for i in rng.permutation(members):
            if count + n_img[i] <= round(targets[s]):
                patients[i].label = 1
                count += n_img[i]


def _make_patients(cfg: DemoConfig, rng: np.random.Generator) -> list[_Patient]:
    n = cfg.n_patients
    shares = np.array([s.share for s in _SITES])
    site = rng.choice(len(_SITES), size=n, p=shares / shares.sum())
    multi = rng.random(n) < _FOLLOW_UP_FRACTION
    n_images = np.where(multi, rng.integers(_FOLLOW_UP_IMAGES[0], _FOLLOW_UP_IMAGES[1] + 1, n), 1)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    age = rng.integers(25, 86, n)
    first_day = rng.integers(0, 3 * 365, n)
    birth_offset = rng.integers(0, 365, n)
    patients: list[_Patient] = []
    for i in range(n):
        first = _BASE_DATE + _dt.timedelta(days=int(first_day[i]))
        birth = _years_before(first, int(age[i])) - _dt.timedelta(days=int(birth_offset[i]))
        patients.append(
            _Patient(
                index=i,
                site=int(site[i]),
                n_images=int(n_images[i]),
                label=0,
                sex=str(sex[i]),
                age=_age_on(birth, first),
                birth_date=birth,
                first_date=first,
            )
        )
    _assign_labels(patients, _site_prevalences(cfg.prevalence), cfg.prevalence, rng)
    return patients


def _years_before(day: _dt.date, years: int) -> _dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _age_on(birth: _dt.date, day: _dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _new_patient_like(
    index: int, site: int, label: int, date: _dt.date, rng: np.random.Generator
) -> _Patient:
    age = int(rng.integers(25, 86))
    birth = _years_before(date, age) - _dt.timedelta(days=int(rng.integers(0, 365)))
    return _Patient(
        index=index,
        site=site,
        n_images=1,
        label=label,
        sex="F" if rng.random() < 0.5 else "M",
        age=_age_on(birth, date),
        birth_date=birth,
        first_date=date,
    )


# ------------------------------------------------------------------ DICOM writing


def _da(day: _dt.date) -> str:
    return day.strftime("%Y%m%d")


def _ds_str(value: float) -> str:
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.8e}"[:16]


def _uid(digest: str, *parts: object) -> str:
    return str(generate_uid(entropy_srcs=[GENERATOR_NAME, digest, *map(str, parts)]))


def _common_header(
    ds: Dataset, img: _Image, pat: _Patient, site: _Site, uids: dict[str, str], time_of_day: str
) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyDate = _da(img.date)
    ds.SeriesDate = _da(img.date)
    ds.ContentDate = _da(img.date)
    ds.StudyTime = time_of_day
    ds.SeriesTime = time_of_day
    ds.ContentTime = time_of_day
    ds.AccessionNumber = uids["accession"]
    ds.Manufacturer = site.manufacturer
    ds.InstitutionName = site.institution
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "XR CHEST"
    ds.ManufacturerModelName = site.model
    ds.PatientName = pat.patient_name
    ds.PatientID = pat.patient_id
    ds.PatientBirthDate = _da(pat.birth_date)
    ds.PatientSex = pat.sex
    ds.PatientAge = f"{_age_on(pat.birth_date, img.date):03d}Y"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = uids["study_id"]
    ds.InstanceNumber = img.instance_number


def _image_dataset(
    img: _Image,
    pixels: np.ndarray,
    pat: _Patient,
    site: _Site,
    uids: dict[str, str],
    time_of_day: str,
) -> Dataset:
    size = pixels.shape[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = site.sop_class
    meta.MediaStorageSOPInstanceUID = img.sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    _common_header(ds, img, pat, site, uids, time_of_day)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = site.sop_class
    ds.SOPInstanceUID = img.sop_uid
    ds.AcquisitionDate = _da(img.date)
    ds.AcquisitionTime = time_of_day
    ds.Modality = site.modality
    if site.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.SeriesDescription = f"CHEST {img.view}"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = img.view
    ds.SeriesNumber = int(uids["series_number"])
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "YES" if site.marker else "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = site.photometric
    ds.Rows = size
    ds.Columns = size
    spacing = _ds_str(_FIELD_OF_VIEW_MM / size)
    ds.PixelSpacing = [spacing, spacing]
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = _ds_str(site.window_center)
    ds.WindowWidth = _ds_str(site.window_width)
    ds.RescaleIntercept = _ds_str(site.rescale_intercept)
    ds.RescaleSlope = _ds_str(site.rescale_slope)
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.add_new(Tag(0x7FE0, 0x0010), "OW", pixels.astype("<u2").tobytes())
    return ds


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _sr_dataset(
    img: _Image, pat: _Patient, site: _Site, uids: dict[str, str], time_of_day: str
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_BASIC_TEXT_SR
    meta.MediaStorageSOPInstanceUID = img.sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    _common_header(ds, img, pat, site, uids, time_of_day)
    ds.SOPClassUID = _SOP_BASIC_TEXT_SR
    ds.SOPInstanceUID = img.sop_uid
    ds.Modality = "SR"
    ds.SeriesDescription = "REPORT"
    ds.SeriesNumber = int(uids["series_number"])
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence(
        [_code_item("18748-4", "LN", "Diagnostic imaging report")]
    )
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = Sequence([_code_item("121071", "DCM", "Finding")])
    text.TextValue = "Synthetic report placeholder; this object carries no pixel data."
    ds.ContentSequence = Sequence([text])
    return ds


def _encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ------------------------------------------------------------------ main entry point


def _config_digest(cfg: DemoConfig) -> str:
    text = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def generate_demo(
    out_dir: str | os.PathLike[str], config: DemoConfig = DemoConfig()
) -> DemoDataset:
    """Write a seeded synthetic chest-X-ray DICOM dataset with planted problems.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output directory; created if missing. It must not already hold a
        ``dicom/`` folder with files.
    config : DemoConfig, optional
        What to generate; see :class:`DemoConfig`.

    Returns
    -------
    DemoDataset
        Paths of the DICOM folder, ``labels.csv`` and ``ground_truth.json``.

    Raises
    ------
    TypeError
        If `config` is not a :class:`DemoConfig` or a field has the wrong type.
    ValueError
        If a field is out of range, or there are fewer images than duplicated
        sources requested.
    FileExistsError
        If ``out_dir/dicom`` already contains files.

    Notes
    -----
    Images are 12-bit (BitsStored 12 in 16-bit words) chest-radiograph phantoms:
    a soft torso, two darker lung fields with rib bands, a brighter mediastinum,
    spine and heart shadow, clavicles, low-frequency shading and signal-dependent
    noise, with per-patient anatomy and per-image pose/exposure variation. A
    positive ('nodule') image carries a Gaussian blob (FWHM 3-8 % of the width,
    peak contrast 0.14-0.26 of the display range) inside a lung field; all images
    of a patient share its true label and nodule position.

    Three sites differ in scanner, photometric interpretation, rescale, contrast
    and prevalence (site_b about 2.2 times the overall rate and a burned-in
    marker; site_a about half of it). Label flips are per image and drawn over
    the readable images (duplicates included, so a duplicate pair may disagree;
    such pairs are listed in ``duplicate_label_conflicts``). Corrupted and
    non-image files keep their patient's true label in ``labels.csv``.

    Follow-up images of one patient look alike (same anatomy and nodule, pose
    changes of a few pixels and degrees, new exposure and noise) but are not
    planted duplicates; score a duplicate detector on the listed pairs and treat
    same-patient pairs from ``follow_up_groups`` separately. Near duplicates are
    shifted together with any burned-in marker and collimation border.

    ``ground_truth.json`` keys: ``generator``, ``version``, ``config``,
    ``class_names``, ``counts``, ``prevalence`` (``overall_true``,
    ``overall_recorded``, ``screening``, ``by_site_true``, ``by_site_recorded``,
    ``computed_over``), ``sites`` (per-site header values and planted look),
    ``label_noise`` (``fn_rate``, ``fp_rate``, counts and ``flipped`` records
    with ``path``, ``true_label``, ``recorded_label``), ``exact_duplicates``,
    ``near_duplicates``, ``cross_patient_duplicates`` (``[source, copy]``
    pairs), ``duplicate_label_conflicts``, ``multi_image_patients``,
    ``follow_up_groups``, ``corrupted``, ``corrupted_kinds``, ``non_image``,
    ``true_labels`` (every labels.csv path) and ``images`` (per readable image:
    ``site``, ``patient`` and ``true_patient`` as opaque folder indices,
    ``kind``, ``source``, ``view``, ``true_label``, ``recorded_label`` and
    ``lesion`` with ``row``, ``col``, ``diameter_px``, ``sigma_px``,
    ``peak_contrast`` or null). Every path is relative to ``dicom/``.
    """
    cfg = _validate_config(config)
    start = time.perf_counter()
    root = Path(out_dir)
    dicom_dir = root / _DICOM_DIR
    if dicom_dir.exists() and any(dicom_dir.iterdir()):
        raise FileExistsError(_MSG_NOT_EMPTY.format(path=dicom_dir))
    size = cfg.image_size
    digest = _config_digest(cfg)
    streams = np.random.SeedSequence(cfg.seed).spawn(6)
    rng_pat, rng_anat, _, rng_extra, rng_flip, rng_hdr = (
        np.random.default_rng(s) for s in streams
    )  # stream 2 seeds the noise of each render chunk

    patients = _make_patients(cfg, rng_pat)
    images: list[_Image] = []

    def add(**kw: Any) -> _Image:
        img = _Image(index=len(images), **kw)
        images.append(img)
        return img

    # Original and follow-up images.
    for pat in patients:
        day = pat.first_date
        for visit in range(pat.n_images):
            if visit:
                day = day + _dt.timedelta(days=int(rng_pat.integers(30, 400)))
            key = f"{pat.index}.{visit}"
            add(
                patient=pat.index,
                true_patient=pat.index,
                kind="original" if visit == 0 else "follow_up",
                visit=visit,
                true_label=pat.label,
                date=day,
                view="AP" if rng_pat.random() < _AP_FRACTION else "PA",
                study_key=key,
                series_key=key,
            )
    n_base = len(images)
    n_dup = cfg.n_exact_duplicates + cfg.n_near_duplicates + cfg.n_cross_patient_duplicates
    if n_dup > n_base:
        raise ValueError(_MSG_TOO_FEW.format(wanted=n_dup, have=n_base, n=cfg.n_patients))

    # Truncated files are extra acquisitions of existing patients (rendered, then cut).
    n_garbage = 1 if cfg.n_corrupted >= 2 else 0
    n_truncated = cfg.n_corrupted - n_garbage
    broken_owner = rng_extra.choice(
        len(patients), size=cfg.n_corrupted, replace=cfg.n_corrupted > len(patients)
    )
    for j, owner in enumerate(broken_owner):
        pat = patients[int(owner)]
        key = f"{pat.index}.x{j}"
        add(
            patient=pat.index,
            true_patient=pat.index,
            kind="corrupted_truncated" if j < n_truncated else "corrupted_not_dicom",
            visit=pat.n_images + j,
            true_label=pat.label,
            date=pat.first_date + _dt.timedelta(days=int(rng_extra.integers(1, 30))),
            view="PA",
            study_key=key,
            series_key=key,
        )

    # Per-image parameters of every image that has pixels of its own.
    rendered = [im for im in images if im.kind != "corrupted_not_dicom"]
    pidx = np.array([im.true_patient for im in rendered], dtype=np.int64)
    anatomy = _draw_anatomy(rng_anat, len(patients))
    site_of = np.array([patients[i].site for i in pidx])
    params = _draw_acquisition(
        rng_anat,
        anatomy,
        pidx,
        np.array([im.visit > 0 for im in rendered]),
        np.array([im.view == "AP" for im in rendered]),
        np.array([_SITES[s].noise for s in site_of]),
    )
    nodule = np.array([im.true_label == 1 for im in rendered])
    for row, img in enumerate(rendered):
        img.render_row = row
        if img.true_label == 1:
            img.lesion = _lesion_record(params, row, size)

    # Duplicates (their pixels are made once the sources are rendered).
    sources = rng_extra.choice(n_base, size=n_dup, replace=False)
    pairs: dict[str, list[tuple[int, int]]] = {
        "exact_duplicate": [],
        "near_duplicate": [],
        "cross_patient_duplicate": [],
    }
    near: dict[int, _NearSpec] = {}
    kinds = (
        ["exact_duplicate"] * cfg.n_exact_duplicates
        + ["near_duplicate"] * cfg.n_near_duplicates
        + ["cross_patient_duplicate"] * cfg.n_cross_patient_duplicates
    )
    for kind, src_index in zip(kinds, sources):
        src = images[int(src_index)]
        lesion = None if src.lesion is None else dict(src.lesion)
        spec = None
        if kind == "exact_duplicate":
            patient, study, series = src.patient, src.study_key, src.series_key
            instance = 2
        elif kind == "near_duplicate":
            spec = _draw_near_spec(rng_extra)
            if lesion is not None:
                lesion["row"] = round(lesion["row"] + spec.shift[0], 3)
                lesion["col"] = round(lesion["col"] + spec.shift[1], 3)
            patient, study = src.patient, src.study_key
            series, instance = f"{src.series_key}.near", 1
        else:
            new = _new_patient_like(
                len(patients), patients[src.patient].site, src.true_label, src.date, rng_extra
            )
            patients.append(new)
            patient = new.index
            study = series = f"{new.index}.0"
            instance = 1
        dup = add(
            patient=patient,
            true_patient=src.true_patient,
            kind=kind,
            visit=src.visit,
            true_label=src.true_label,
            date=src.date,
            view=src.view,
            study_key=study,
            series_key=series,
            source=src.index,
            lesion=lesion,
            instance_number=instance,
        )
        if spec is not None:
            near[dup.index] = spec
        pairs[kind].append((src.index, dup.index))

    # Non-image SR documents filed with an existing study of the patient.
    sr_owner = rng_extra.choice(
        len(patients), size=cfg.n_non_image, replace=cfg.n_non_image > len(patients)
    )
    for j, owner in enumerate(sr_owner):
        pat = patients[int(owner)]
        add(
            patient=pat.index,
            true_patient=pat.index,
            kind="non_image",
            visit=0,
            true_label=pat.label,
            date=pat.first_date,
            view="",
            study_key=f"{pat.index}.0",
            series_key=f"{pat.index}.sr{j}",
            instance_number=1,
        )
    garbage = {
        im.index: _garbage_bytes(rng_extra, size)
        for im in images
        if im.kind == "corrupted_not_dicom"
    }

    # Label noise: per image, over the readable images.
    valid = np.array([im.index for im in images if im.has_pixels])
    true_valid = np.array([images[i].true_label for i in valid])
    pos, neg = valid[true_valid == 1], valid[true_valid == 0]
    n_fn = round(cfg.label_noise_fn_rate * pos.size)
    n_fp = round(cfg.label_noise_fp_rate * neg.size)
    flips = set(rng_flip.choice(pos, size=n_fn, replace=False).tolist())
    flips |= set(rng_flip.choice(neg, size=n_fp, replace=False).tolist())
    for img in images:
        img.recorded_label = 1 - img.true_label if img.index in flips else img.true_label

    # Identifiers, opaque folders and file names, study and series numbering.
    width = max(4, len(str(len(patients))))
    id_width = max(6, len(str(len(patients))))
    folder_order = rng_hdr.permutation(len(patients))
    for pat, folder in zip(patients, folder_order):
        pat.folder = f"{int(folder):0{width}d}"
        pat.patient_id = f"DEMO-PID-{pat.index + 1:0{id_width}d}"
        pat.patient_name = f"DEMO^PATIENT{pat.index + 1:0{id_width}d}"
    names: set[str] = set()
    for img in images:
        name = hashlib.sha256(f"{digest}:file:{img.index}".encode()).hexdigest()[:16]
        if name in names:  # pragma: no cover - 64-bit collision
            name = hashlib.sha256(f"{digest}:file2:{img.index}".encode()).hexdigest()[:16]
        names.add(name)
        img.path = f"{patients[img.patient].folder}/{name}.dcm"
    headers = _assign_uids(images, digest, rng_hdr)
    planned = time.perf_counter()

    # Render in a worker thread (numpy releases the GIL) while this thread
    # encodes and writes the files that are ready.
    batch = max(1, (1 << 15) // (size * size))  # small chunks stay in cache
    chunks = [range(r, min(r + batch, len(rendered))) for r in range(0, len(rendered), batch)]
    noise_seeds = streams[2].spawn(len(chunks))
    for folder in sorted({pat.folder for pat in patients}):
        (dicom_dir / folder).mkdir(parents=True, exist_ok=True)

    def write(img: _Image) -> None:
        target = dicom_dir / img.path
        if img.kind == "corrupted_not_dicom":
            target.write_bytes(garbage[img.index])
            return
        pat = patients[img.patient]
        site = _SITES[pat.site]
        hdr = headers[img.index]
        if img.kind == "non_image":
            target.write_bytes(_encode(_sr_dataset(img, pat, site, hdr, hdr["time"])))
            return
        pixels = img.pixels if img.pixels is not None else np.zeros((size, size), np.uint16)
        data = _encode(_image_dataset(img, pixels, pat, site, hdr, hdr["time"]))
        if img.kind == "corrupted_truncated":
            data = data[: len(data) - int(0.6 * size * size * 2)]
        target.write_bytes(data)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medaudit-demo-render")
    try:
        futures = [
            pool.submit(
                _render_chunk,
                {k: v[chunk.start : chunk.stop] for k, v in params.items()},
                nodule[chunk.start : chunk.stop],
                site_of[chunk.start : chunk.stop],
                size,
                np.random.default_rng(seed),
            )
            for chunk, seed in zip(chunks, noise_seeds)
        ]
        for chunk, future in zip(chunks, futures):
            for row, pixels in zip(chunk, future.result()):
                rendered[row].pixels = pixels
                write(rendered[row])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for img in images:
        if img.source is not None:
            src = images[img.source]
            src_pixels = src.pixels if src.pixels is not None else np.zeros((size, size), np.uint16)
            if img.kind == "near_duplicate":
                site = _SITES[patients[src.patient].site]
                img.pixels = _near_duplicate(src_pixels, site, near[img.index])
            else:
                img.pixels = src_pixels.copy()
        if img.render_row is None:
            write(img)
    written = time.perf_counter()

    labels_csv = root / _LABELS_FILE
    gt_path = root / _GROUND_TRUTH_FILE
    ordered = sorted(images, key=lambda im: im.path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label"])
    for img in ordered:
        writer.writerow([img.path, CLASS_NAMES[img.recorded_label]])
    labels_csv.write_text(buf.getvalue(), encoding="utf-8", newline="")

    truth = _ground_truth(cfg, patients, images, ordered, pairs)
    gt_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8", newline="")
    done = time.perf_counter()
    _LOG.info(
        "generated %d demo files (%d readable images) in %.2f s under %s "
        "(planning %.2f s, rendering + writing %.2f s, labels and ground truth %.2f s)",
        len(images),
        int(valid.size),
        done - start,
        root,
        planned - start,
        written - planned,
        done - written,
    )
    return DemoDataset(root=root, dicom_dir=dicom_dir, labels_csv=labels_csv, ground_truth=gt_path)


def _garbage_bytes(rng: np.random.Generator, size: int) -> bytes:
    data = bytearray(rng.integers(0, 256, size=1024 + size * 8, dtype=np.uint8).tobytes())
    if data[128:132] == b"DICM":  # pragma: no cover - astronomically unlikely
        data[128] = 0
    return bytes(data)


def _rate(values: list[int]) -> float | None:
    return round(float(np.mean(values)), 6) if values else None


def _ground_truth(
    cfg: DemoConfig,
    patients: list[_Patient],
    images: list[_Image],
    ordered: list[_Image],
    pairs: dict[str, list[tuple[int, int]]],
) -> dict[str, Any]:
    name = CLASS_NAMES
    valid = [im for im in ordered if im.has_pixels]
    site_of = {im.index: patients[im.patient].site for im in images}
    by_site_true = {
        s.key: _rate([im.true_label for im in valid if site_of[im.index] == k])
        for k, s in enumerate(_SITES)
    }
    by_site_recorded = {
        s.key: _rate([im.recorded_label for im in valid if site_of[im.index] == k])
        for k, s in enumerate(_SITES)
    }
    size = cfg.image_size
    sites: dict[str, Any] = {}
    for k, s in enumerate(_SITES):
        box = _marker_box(size)
        sites[s.key] = {
            "institution_name": s.institution,
            "manufacturer": s.manufacturer,
            "model": s.model,
            "modality": s.modality,
            "sop_class_uid": s.sop_class,
            "photometric_interpretation": s.photometric,
            "rescale_slope": s.rescale_slope,
            "rescale_intercept": s.rescale_intercept,
            "window_center": s.window_center,
            "window_width": s.window_width,
            "gamma": s.gamma,
            "brightness": s.brightness,
            "contrast": s.contrast,
            "noise_factor": s.noise,
            "marker": "burned-in bright blocky 'R' glyph, top-left corner" if s.marker else None,
            "marker_box": list(box) if s.marker else None,
            "collimation_border_px": _border_px(s, size),
            "description": s.description,
            "n_images": sum(1 for im in valid if site_of[im.index] == k),
            "n_patients": len({im.patient for im in valid if site_of[im.index] == k}),
        }
    flipped = [
        {
            "path": im.path,
            "true_label": name[im.true_label],
            "recorded_label": name[im.recorded_label],
        }
        for im in ordered
        if im.true_label != im.recorded_label
    ]
    path_of = {im.index: im.path for im in images}

    def pair_paths(kind: str) -> list[list[str]]:
        return [[path_of[a], path_of[b]] for a, b in pairs[kind]]

    conflicts = [
        [path_of[a], path_of[b]]
        for kind in ("exact_duplicate", "near_duplicate", "cross_patient_duplicate")
        for a, b in pairs[kind]
        if images[a].recorded_label != images[b].recorded_label
    ]
    groups: dict[int, list[str]] = {}
    for im in images:
        if im.kind in ("original", "follow_up"):
            groups.setdefault(im.patient, []).append(im.path)
    follow_up_groups = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    n_pos = sum(im.true_label for im in valid)
    flipped_fn = sum(1 for im in valid if im.true_label == 1 and im.recorded_label == 0)
    flipped_fp = sum(1 for im in valid if im.true_label == 0 and im.recorded_label == 1)
    corrupted = [im for im in ordered if im.kind.startswith("corrupted")]
    return {
        "generator": GENERATOR_NAME,
        "version": GROUND_TRUTH_VERSION,
        "config": dataclasses.asdict(cfg),
        "class_names": list(CLASS_NAMES),
        "counts": {
            "files": len(images),
            "readable_images": len(valid),
            "patients": len(patients),
            "patients_with_readable_images": len({im.patient for im in valid}),
        },
        "prevalence": {
            "overall_true": _rate([im.true_label for im in valid]),
            "overall_recorded": _rate([im.recorded_label for im in valid]),
            "screening": cfg.screening_prevalence,
            "by_site_true": by_site_true,
            "by_site_recorded": by_site_recorded,
            "computed_over": "readable images (files with pixel data), duplicates included",
        },
        "sites": sites,
        "label_noise": {
            "fn_rate": cfg.label_noise_fn_rate,
            "fp_rate": cfg.label_noise_fp_rate,
            "n_true_positive": n_pos,
            "n_true_negative": len(valid) - n_pos,
            "n_flipped_positive_to_negative": flipped_fn,
            "n_flipped_negative_to_positive": flipped_fp,
            "scope": "per image, over readable images (duplicates included)",
            "flipped": flipped,
        },
        "exact_duplicates": pair_paths("exact_duplicate"),
        "near_duplicates": pair_paths("near_duplicate"),
        "cross_patient_duplicates": pair_paths("cross_patient_duplicate"),
        "duplicate_label_conflicts": conflicts,
        "multi_image_patients": len(follow_up_groups),
        "follow_up_groups": follow_up_groups,
        "corrupted": [im.path for im in corrupted],
        "corrupted_kinds": {
            im.path: ("truncated_pixel_data" if im.kind == "corrupted_truncated" else "not_dicom")
            for im in corrupted
        },
        "non_image": [im.path for im in ordered if im.kind == "non_image"],
        "true_labels": {im.path: name[im.true_label] for im in ordered},
        "images": {
            im.path: {
                "site": _SITES[site_of[im.index]].key,
                "patient": int(patients[im.patient].folder),
                "true_patient": int(patients[im.true_patient].folder),
                "kind": im.kind,
                "source": None if im.source is None else path_of[im.source],
                "view": im.view,
                "true_label": name[im.true_label],
                "recorded_label": name[im.recorded_label],
                "lesion": im.lesion,
            }
            for im in valid
        },
    }


def load_ground_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``ground_truth.json`` written by :func:`generate_demo`.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file, or the dataset root that contains it.

    Returns
    -------
    dict
        The parsed ground truth (schema in :func:`generate_demo`).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a medaudit demo ground truth of a known version.
    """
    p = Path(path)
    if p.is_dir():
        p = p / _GROUND_TRUTH_FILE
    if not p.is_file():
        raise FileNotFoundError(f"demo ground truth not found: {p}")
    data = json.loads(p.read_text(encoding="utf-8"))
    if (
        not isinstance(data, dict)
        or data.get("generator") != GENERATOR_NAME
        or data.get("version") != GROUND_TRUTH_VERSION
    ):
        got = data if isinstance(data, dict) else {}
        raise ValueError(
            _MSG_BAD_GT.format(
                path=p,
                gen=GENERATOR_NAME,
                ver=GROUND_TRUTH_VERSION,
                got_gen=got.get("generator"),
                got_ver=got.get("version"),
            )
        )
    return data
