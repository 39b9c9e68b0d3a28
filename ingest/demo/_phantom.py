"""The chest-radiograph phantom: anatomy, pose and exposure, the nodule, rendering.

Images are drawn in display space ([0, 1], 0 = black) on a normalised
``[-1, 1]`` grid: a soft torso, two darker lung fields with rib bands, a
brighter mediastinum, spine and heart shadow, clavicles, low-frequency shading
and signal-dependent noise. Anatomy is drawn per patient; pose, exposure and
shading per image. A positive image carries a Gaussian nodule inside a lung
field. The site look and stored values are applied afterwards
(:mod:`ingest.demo._appearance`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["draw_acquisition", "draw_anatomy", "lesion_record", "render"]

# Nodule: diameter (full width at half maximum) as a fraction of image width,
# and peak contrast in display units (0 = black, 1 = white). Sized so that the
# demo's model can learn the task at the demo's scale (64 px cache, ~2,000 images,
# 10 epochs): 4.5-7.7 px FWHM at 64 px, a clear blob against the rib bands
# (0.05-0.08) and the noise (~0.02). Before, 0.03-0.08 and 0.14-0.26 (2-5 px,
# often a rib's contrast) left the demo's model at an out-of-fold AUC of ~0.75,
# too weak for its label-noise estimate to mean anything (issue 17).
_NODULE_DIAMETER = (0.07, 0.12)
_NODULE_CONTRAST = (0.25, 0.40)
# Candidate nodule centres tried per patient (rejection sampling).
_NODULE_CANDIDATES = 64
# sigma = FWHM / _FWHM_PER_SIGMA for a Gaussian.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


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
    """Normalised radius of the heart shadow (< 1 inside)."""
    return ((x - p["heart_x"]) / p["heart_a"]) ** 2 + ((y - p["heart_y"]) / p["heart_b"]) ** 2


def draw_anatomy(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Draw per-patient anatomy, in normalised [-1, 1] units.

    Parameters
    ----------
    rng : numpy.random.Generator
        The anatomy stream; the draws do not depend on any label.
    n : int
        Number of patients.

    Returns
    -------
    dict of str to ndarray, each (n,)
        Pose (``theta``, ``dx``, ``dy``, ``scale``), body, lung, heart, rib and
        clavicle shape, and a nodule site (``nod_x``, ``nod_y``, ``nod_diam``
        as FWHM, ``nod_amp``) drawn for every patient.
    """
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
    _draw_nodule_site(rng, p)
    p["nod_diam"] = u(*_NODULE_DIAMETER, n) * 2.0  # FWHM in normalised units
    p["nod_amp"] = u(*_NODULE_CONTRAST, n)
    return p


def _draw_nodule_site(rng: np.random.Generator, p: dict[str, np.ndarray]) -> None:
    """Add ``nod_x`` and ``nod_y``: a point well inside a lung field, off the heart.

    Rejection sampling over :data:`_NODULE_CANDIDATES` points per patient; a
    patient without an accepted point gets the centre of the chosen lung.
    """
    n = p["lung_x"].size
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    k = _NODULE_CANDIDATES
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


def draw_acquisition(
    rng: np.random.Generator,
    base: dict[str, np.ndarray],
    patient: np.ndarray,
    follow_up: np.ndarray,
    ap_view: np.ndarray,
    noise_factor: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-image parameters: patient anatomy plus acquisition and follow-up changes.

    Parameters
    ----------
    rng : numpy.random.Generator
        The anatomy stream, after :func:`draw_anatomy`.
    base : dict of str to ndarray, each (P,)
        Per-patient anatomy from :func:`draw_anatomy`.
    patient : ndarray of int, (B,)
        Patient index of each image.
    follow_up : ndarray of bool, (B,)
        Follow-up images get a new pose and a slightly grown nodule.
    ap_view : ndarray of bool, (B,)
        AP images show a larger heart and a little magnification.
    noise_factor : ndarray of float, (B,)
        The site's noise multiplier of each image.

    Returns
    -------
    dict of str to ndarray, each (B,)
        The anatomy keys plus ``gain``, ``offset``, low-frequency shading
        (``lf_*``) and ``noise``.
    """
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


def render(
    p: dict[str, np.ndarray], nodule: np.ndarray, size: int, noise: np.ndarray
) -> np.ndarray:
    """Render display-space phantoms in [0, 1].

    Parameters
    ----------
    p : dict of str to ndarray, each (B,)
        Per-image parameters from :func:`draw_acquisition`.
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
    img = _chest(q, x, y)

    pos = np.flatnonzero(nodule)
    if pos.size:
        sigma = q["nod_diam"][pos] / f32(_FWHM_PER_SIGMA)
        r2 = (x[pos] - q["nod_x"][pos]) ** 2 + (y[pos] - q["nod_y"][pos]) ** 2
        img[pos] += q["nod_amp"][pos] * _neg_exp(r2 / (2.0 * sigma * sigma))

    img += q["lf_u"] * uu + q["lf_v"] * vv + q["lf_r"] * (uu * uu + vv * vv)
    img += q["lf_c"] * np.cos(f32(math.pi) * (q["lf_fu"] * uu + q["lf_fv"] * vv) + q["lf_phi"])
    img = q["gain"] * img + q["offset"]
    img += q["noise"] * np.sqrt(np.clip(img, 0.0, 1.0) + f32(0.05)) * noise
    return np.clip(img, 0.0, 1.0, out=img)


def _chest(q: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Noise-free chest without nodule or shading.

    Parameters
    ----------
    q : dict of str to ndarray of float32, each (B, 1, 1)
        Per-image parameters.
    x, y : ndarray of float32, (B, size, size)
        Patient coordinates of every pixel (pose applied).

    Returns
    -------
    ndarray of float32, (B, size, size)
    """
    f32 = np.float32
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
    return img


def lesion_record(p: dict[str, np.ndarray], i: int, size: int) -> dict[str, float]:
    """Nodule centre and size of image ``i`` in stored-pixel coordinates.

    Parameters
    ----------
    p : dict of str to ndarray, each (B,)
        Per-image parameters from :func:`draw_acquisition`.
    i : int
        Row of the image in ``p``.
    size : int
        Rows = columns.

    Returns
    -------
    dict
        ``row``, ``col``, ``diameter_px`` (FWHM), ``sigma_px`` (rounded to 3
        decimals) and ``peak_contrast`` (display units, exposure gain applied,
        4 decimals).
    """
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
        "sigma_px": round(float(diam / _FWHM_PER_SIGMA), 3),
        "peak_contrast": round(float(p["nod_amp"][i] * p["gain"][i]), 4),
    }
