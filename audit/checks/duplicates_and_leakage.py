"""Check ``duplicates_and_leakage``: duplicate images and patient leakage.

What it finds
-------------
* **Exact duplicates**: rows of the image cache with identical bytes (a
  128-bit BLAKE2b hash of every row, read in chunks from the memory map).
* **Near-duplicates**: pairs of images whose distance is far below what
  separates *different patients* in the same data. By default (pixel space)
  candidate pairs are each image's nearest neighbours among block-mean
  thumbnails with the dataset's mean thumbnail removed, and each candidate
  pair is then compared at up to 64 x 64 px, blurred, by its largest
  normalized cross-correlation over shifts of up to 2 px: distance
  ``1 - max NCC``, blind to brightness, contrast and a pixel or two of
  misregistration. Model embeddings can be used too (``near_duplicate_space``;
  cosine distance); out-of-fold embeddings of different folds come from
  different models, so by default they are compared only within the rows one
  model embedded.
* What the duplicates break: a duplicate group spanning **several patient
  IDs** (a likely ID error that also defeats patient-grouped splitting), a
  patient or duplicate group spanning **several values of the split column**
  (train/test leakage), and a patient or duplicate group spanning **several
  cross-validation folds** (optimistic out-of-fold scores).

The calibrated threshold
------------------------
For every image ``i`` let ``r_i`` be the distance to its nearest candidate
filed under a *different* patient (among its ``n_neighbors`` candidates). On
``log r`` (distances are skewed and bounded by zero; the log spreads the lower
tail) take the median ``m`` and the robust standard deviation ``s``
(:func:`audit.stats.robust_center_scale`). A pair is a near-duplicate when
its distance is at most::

    threshold = min(exp(m - threshold_z * s), threshold_max_ratio * exp(m))

i.e. more than ``threshold_z`` robust standard deviations below the typical
nearest other-patient distance, and at most ``threshold_max_ratio`` times it.
Planted duplicates sit inside ``r`` too, but median and MAD tolerate up to half
of the data being contaminated. With fewer than ``min_reference`` usable
reference distances ``fallback_threshold`` is used; ``distance_threshold``
overrides the rule. The threshold, the rule and the reference statistics are
reported in every finding's evidence.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from audit._neighbors import Backend, knn, pixel_embedding, rows_per_chunk
from audit.check_spec import CheckSpec
from audit.context import AuditContext
from audit.findings import Finding
from audit.stats import robust_center_scale

__all__ = [
    "SPEC",
    "TITLE_CROSS_PATIENT",
    "TITLE_FOLD_LEAKAGE",
    "TITLE_FOLD_LEAKAGE_DUPLICATES",
    "TITLE_PASS",
    "TITLE_SPLIT_LEAKAGE",
    "TITLE_WITHIN_PATIENT",
    "DuplicatesAndLeakageConfig",
    "check_duplicates_and_leakage",
]

NAME = "duplicates_and_leakage"

TITLE_CROSS_PATIENT = "Identical or near-identical images filed under different patient IDs"
TITLE_SPLIT_LEAKAGE = "Train/test leakage across the '{column}' column"
TITLE_FOLD_LEAKAGE = "Patients split across cross-validation folds"
TITLE_FOLD_LEAKAGE_DUPLICATES = "Duplicate images straddle cross-validation folds"
TITLE_WITHIN_PATIENT = "Duplicate images within the same patient"
TITLE_PASS = "No duplicate images or patient leakage found"

MSG_CROSS_PATIENT = (
    "{groups} group(s) of identical or nearly identical images ({images} images) are filed "
    "under more than one patient ID. The same image under two patients usually means a "
    "patient-ID or filing error; it also defeats splitting the data by patient, so the "
    "model can be tested on an image it was trained on."
)
MSG_SPLIT_LEAKAGE = (
    "Images of the same patient, or copies of the same image, appear in more than one "
    "data partition ('{column}'): {patients} patient(s) span partitions and {groups} "
    "duplicate group(s) span partitions ({images} images in all). Test results on such "
    "data overstate how the model performs on new patients."
)
MSG_FOLD_LEAKAGE = (
    "{patients} patient(s) have images in more than one cross-validation fold "
    "({images} images), and {groups} duplicate group(s) straddle folds. The model was "
    "evaluated on patients it had already seen during training, so the out-of-fold "
    "results are optimistic."
)
MSG_FOLD_LEAKAGE_DUPLICATES = (
    "{groups} group(s) of identical or nearly identical images ({images} images) are split "
    "across cross-validation folds: the model was evaluated on copies of images it was "
    "trained on, so the out-of-fold results are optimistic."
)
MSG_WITHIN_PATIENT = (
    "{groups} group(s) of duplicate images belong to a single patient ({images} images; "
    "{exact} exact copies, {near} near-copies). Repeated images give that patient extra "
    "weight in training and in the reported results."
)
MSG_PASS = (
    "No two images are identical or closer than the calibrated near-duplicate threshold "
    "across patients, partitions or folds, and no patient spans partitions or folds."
)

REC_CROSS_PATIENT = (
    "Check the patient IDs of the listed images at the source (PACS/RIS). Merge the IDs if "
    "they are the same patient, otherwise remove the mis-filed copies; then re-ingest and "
    "re-train with patient-grouped folds."
)
REC_SPLIT_LEAKAGE = (
    "Re-assign partitions by patient (every image of a patient, and every copy of an image, "
    "in one partition) and re-evaluate; report how partitions were assigned."
)
REC_FOLD_LEAKAGE = (
    "Re-train with patient-grouped folds (StratifiedGroupKFold on patient_key) after fixing "
    "the duplicate groups; treat current out-of-fold metrics as optimistic."
)
REC_WITHIN_PATIENT = (
    "Keep one image per duplicate group unless the repeats are intended (e.g. repeat "
    "acquisitions), and count patients, not images, when reporting sample size."
)

_REFS_PARTITION = ["CLAIM:partitions", "GMLP-4", "TRIPOD+AI:analysis", "EU-AI-Act-10(3)"]
_REFS_QUALITY = ["TRIPOD+AI:data-preparation", "CLAIM:case-flow", "EU-AI-Act-10(3)"]

_EXACT_METHOD = "128-bit BLAKE2b hash of each image-cache row (identical bytes)"


@dataclass(frozen=True)
class DuplicatesAndLeakageConfig:
    """Settings of :func:`check_duplicates_and_leakage`.

    Attributes
    ----------
    near_duplicate_space : {'pixels', 'embeddings', 'both', 'none'}, default 'pixels'
        Where near-duplicates are searched. ``pixels`` (the image cache, always
        present) finds re-saved, re-windowed, slightly shifted or noisy copies
        and compares all rows on one footing; out-of-fold ``embeddings`` come
        from different fold models, so they only see within-fold pairs unless
        ``embeddings_from_one_model``. ``both`` unites the two; ``none`` keeps
        only exact duplicates. ``embeddings`` falls back to ``pixels`` when the
        run has none.
    pixel_embedding_size : int, default 16
        Side of the candidate thumbnail (16 x 16 = 256 values per channel):
        coarse enough that a 1-2 pixel shift barely moves it, fine enough that a
        copy ranks among an image's ``n_neighbors`` nearest.
    align_size : int, default 64
        Side (px) at which candidate pairs of the pixel space are compared
        (the cache side if smaller). At 32 px a half-pixel shift of a 64 px
        image already costs as much correlation as a different patient.
    align_max_shift : int, default 2
        Largest shift (px at ``align_size``, scaled down with it) searched by
        the aligned comparison: 1-2 px of misregistration between copies.
    align_blur : float, default 1.0
        Gaussian blur (sigma, px at ``align_size``) before comparing, so
        sub-pixel shifts and resampling noise barely count.
    embeddings_from_one_model : bool, default False
        Set when ``oof/embeddings`` come from one frozen backbone or an external
        model, so embeddings of all rows are comparable.
    n_neighbors : int, default 10
        Neighbours per image: enough to see past a few same-patient images to
        the nearest other patient (the calibration reference) and to find
        every member of a small duplicate group.
    threshold_z : float, default 5.0
        Robust standard deviations of ``log r`` below its median. Five keeps the
        expected false pairs in clean data below one in 10^5 images for a
        normal-like log-distance tail, yet planted copies sit much deeper.
    threshold_max_ratio : float, default 0.5
        The threshold never exceeds half the median nearest other-patient
        distance (guards data whose distances barely vary, where ``s`` is tiny).
    distance_threshold : float or None, default None
        A fixed distance threshold (``1 - correlation``) instead of the calibration.
    min_reference : int, default 20
        Fewest reference distances the calibration needs.
    fallback_threshold : float, default 0.01
        Distance used without enough references (a correlation of 0.99).
    split_column : str, default 'split'
        Manifest column naming the partition (train/val/test); leakage across
        it is checked when present.
    neighbors_backend : {'auto', 'exact', 'ivf'}, default 'auto'
        See :func:`audit._neighbors.knn`.
    exact_limit : int or None, default None
        Rows searched by brute force (scikit-learn) under ``auto``, an
        approximate inverted file (faiss) above; ``None``: as many as keep the
        work ``N**2 * D`` under :data:`audit._neighbors.EXACT_MAX_WORK`
        (about 10,000 rows of 512-d embeddings or 14,000 of 256-d pixel
        features: seconds on two cores).
    max_pairs_listed : int, default 50
        Pairs listed in evidence (closest first); counts are always complete.
    max_sample_ids : int, default 2000
        Affected ``sample_ids`` listed per finding.
    """

    near_duplicate_space: Literal["pixels", "embeddings", "both", "none"] = "pixels"
    pixel_embedding_size: int = 16
    align_size: int = 64
    align_max_shift: int = 2
    align_blur: float = 1.0
    embeddings_from_one_model: bool = False
    n_neighbors: int = 10
    threshold_z: float = 5.0
    threshold_max_ratio: float = 0.5
    distance_threshold: float | None = None
    min_reference: int = 20
    fallback_threshold: float = 0.01
    split_column: str = "split"
    neighbors_backend: Backend = "auto"
    exact_limit: int | None = None
    max_pairs_listed: int = 50
    max_sample_ids: int = 2000

    def __post_init__(self) -> None:
        if self.near_duplicate_space not in ("pixels", "embeddings", "both", "none"):
            raise ValueError(
                "near_duplicate_space must be one of 'pixels', 'embeddings', 'both', 'none'; "
                f"got {self.near_duplicate_space!r}"
            )
        if self.neighbors_backend not in get_args(Backend):
            raise ValueError(
                f"neighbors_backend must be one of {list(get_args(Backend))}; "
                f"got {self.neighbors_backend!r}"
            )
        if self.align_max_shift < 0 or self.align_blur < 0:
            raise ValueError("align_max_shift and align_blur must be >= 0")
        for name in ("pixel_embedding_size", "align_size", "n_neighbors", "min_reference",
                     "exact_limit"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)!r}")
        if not 0 < self.threshold_max_ratio <= 1:
            raise ValueError(f"threshold_max_ratio must be in (0, 1]; got {self.threshold_max_ratio!r}")
        if self.distance_threshold is not None and self.distance_threshold < 0:
            raise ValueError(f"distance_threshold must be >= 0; got {self.distance_threshold!r}")


# --------------------------------------------------------------------------- detection
def _pixel_hashes(images: np.ndarray) -> np.ndarray:
    """Group code of every image by identical bytes, shape ``(N,)`` int64."""
    digests: list[bytes] = []
    chunk_rows = rows_per_chunk(images)
    for a in range(0, images.shape[0], chunk_rows):
        block = np.ascontiguousarray(images[a : a + chunk_rows])
        flat = block.reshape(block.shape[0], -1)
        digests.extend(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat)
    return pd.factorize(pd.Series(digests, dtype=object))[0].astype(np.int64)


def _exact_edges(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Star edges (first member, other member) of every group of equal codes."""
    _, first, counts = np.unique(codes, return_index=True, return_counts=True)
    if not (counts > 1).any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    head = first[codes]
    other = np.flatnonzero(head != np.arange(codes.size))
    return head[other].astype(np.int64), other.astype(np.int64)


@dataclass
class _Calibration:
    space: str
    threshold: float
    rule: str
    method: str
    reference_n: int
    reference_median: float | None
    reference_log_scale: float | None

    def to_evidence(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "threshold": self.threshold,
            "rule": self.rule,
            "method": self.method,
            "reference_n": self.reference_n,
            "reference_median_distance": self.reference_median,
            "reference_log_scale": self.reference_log_scale,
        }


def _other_patient_r(dist: np.ndarray, idx: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Per row, the smallest distance to a candidate of another patient (finite, > 0 only)."""
    other = (idx >= 0) & (patient[np.maximum(idx, 0)] != patient[:, None])
    r = np.where(other, dist, np.inf).min(axis=1).astype(np.float64)
    return r[np.isfinite(r) & (r > 0)]


def _calibrate(
    r: np.ndarray, config: DuplicatesAndLeakageConfig
) -> tuple[float, str, int, float | None, float | None]:
    """Threshold from the nearest other-patient distances ``r`` (see the module docstring)."""
    med = float(np.median(r)) if r.size else None
    if config.distance_threshold is not None:
        return float(config.distance_threshold), "fixed (distance_threshold)", int(r.size), med, None
    if r.size < config.min_reference:
        return (
            float(config.fallback_threshold),
            f"fallback_threshold: only {r.size} nearest other-patient distances "
            f"(< min_reference={config.min_reference})",
            int(r.size), med, None,
        )  # fmt: skip
    m, s = robust_center_scale(np.log(r))
    thr = min(math.exp(m - config.threshold_z * s), config.threshold_max_ratio * math.exp(m))
    rule = (
        f"min(exp(median(log r) - {config.threshold_z:g} * robust_sd(log r)), "
        f"{config.threshold_max_ratio:g} * median(r)); r = distance to the nearest image of "
        "another patient"
    )
    return float(thr), rule, int(r.size), float(math.exp(m)), float(s)


# -- aligned comparison of two images -------------------------------------------------
def _working_images(
    images: np.ndarray, rows: np.ndarray, size: int, blur: float
) -> np.ndarray:
    """Grey, block-averaged to ``size`` (at most ``S``), blurred, float64: ``(len(rows), W, W)``."""
    order = np.argsort(rows, kind="stable")
    block = np.asarray(images[rows[order]], dtype=np.float32)
    if block.ndim == 4:
        block = block.mean(axis=1)
    _, h, w = block.shape
    if size < h or size < w:
        rs = np.unique((np.arange(min(size, h)) * h) // min(size, h))
        cs = np.unique((np.arange(min(size, w)) * w) // min(size, w))
        rc = np.diff(np.append(rs, h)).astype(np.float32)
        cc = np.diff(np.append(cs, w)).astype(np.float32)
        block = np.add.reduceat(np.add.reduceat(block, rs, axis=1), cs, axis=2)
        block /= rc[:, None] * cc[None, :]
    if blur > 0:
        block = gaussian_filter(block, sigma=(0, blur, blur), mode="nearest")
    out = np.empty(block.shape, np.float64)
    out[order] = block
    return out


def _border_integrals(x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Integral image of ``x`` ``(P, W, W)`` at the cut lines a shift of <= m needs.

    Returns ``I`` ``(P, L, L)`` with ``I[:, u, v] = x[:, :cut[u], :cut[v]].sum()`` and
    ``cut = [0..m, W-m..W]`` (all of ``0..W`` for small images): O(P m W) work
    instead of O(P W^2) for the full integral image.
    """
    w = x.shape[1]

    def cum0(v: np.ndarray, axis: int) -> np.ndarray:  # sums of the first r slices, r = 0..len
        c = np.cumsum(v, axis=axis)
        return np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)

    if w <= 4 * m + 2:
        return cum0(cum0(x, 1), 2), np.arange(w + 1)
    cut = np.concatenate([np.arange(m + 1), np.arange(w - m, w + 1)])
    total = x.sum(axis=1, keepdims=True)
    top = cum0(x[:, :m, :], 1)  # first r rows, r = 0..m
    tail = np.cumsum(x[:, w - m :, :][:, ::-1], axis=1)[:, ::-1]  # rows >= w-m+t
    rows = np.concatenate([top, total - tail, total], axis=1)  # (P, 2m+2, W)
    tot_c = rows.sum(axis=2, keepdims=True)
    left = cum0(rows[:, :, :m], 2)
    tail_c = np.cumsum(rows[:, :, w - m :][:, :, ::-1], axis=2)[:, :, ::-1]
    right = np.concatenate([tot_c - tail_c, tot_c], axis=2)
    return np.concatenate([left, right], axis=2), cut


def _max_ncc(work: np.ndarray, ia: np.ndarray, ib: np.ndarray, max_shift: int) -> np.ndarray:
    """Largest normalized cross-correlation of image pairs over small shifts.

    Pearson correlation of the overlapping parts of ``work[ia[p]]`` and
    ``work[ib[p]]`` for every shift with ``|dy|, |dx| <= max_shift``: the products
    from one FFT cross-correlation (zero-padded: no wrap-around), the overlap
    sums and sums of squares from integral images (Lewis 1995, "Fast normalized
    cross-correlation").

    Parameters
    ----------
    work : numpy.ndarray
        ``(U, W, W)`` images.
    ia, ib : numpy.ndarray
        ``(P,)`` indices into ``work`` of the two images of each pair.
    max_shift : int
        Largest shift in pixels (0: plain correlation).

    Returns
    -------
    numpy.ndarray
        ``(P,)`` correlations in ``[-1, 1]`` (0 where an image is constant).
    """
    u, h, w = work.shape
    eps = 1e-9
    x = (work - work.mean(axis=(1, 2), keepdims=True)).astype(np.float32)
    if max_shift <= 0:
        flat = x.reshape(u, -1).astype(np.float64)
        norm = np.sqrt(np.einsum("ij,ij->i", flat, flat))
        num = np.einsum("ij,ij->i", flat[ia], flat[ib])
        den = norm[ia] * norm[ib]
        return np.where(den > eps, num / np.maximum(den, eps), 0.0)
    m = max_shift
    shape = (h + m, w + m)
    spec = np.fft.rfft2(x, s=shape)
    cross = np.fft.irfft2(spec[ia] * np.conj(spec[ib]), s=shape)
    x64 = x.astype(np.float64)
    i1, cut = _border_integrals(x64, m)
    i2, _ = _border_integrals(x64 * x64, m)
    pos = {int(c): k for k, c in enumerate(cut)}

    def rect(ii: np.ndarray, rows: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        a, b, c, d = pos[r0], pos[r1], pos[c0], pos[c1]
        return ii[rows, b, d] - ii[rows, a, d] - ii[rows, b, c] + ii[rows, a, c]

    best = np.full(ia.size, -1.0)
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            n = (h - abs(dy)) * (w - abs(dx))
            ar = (max(0, dy), h + min(0, dy), max(0, dx), w + min(0, dx))
            br = (max(0, -dy), h + min(0, -dy), max(0, -dx), w + min(0, -dx))
            sa, saa = rect(i1, ia, *ar), rect(i2, ia, *ar)
            sb, sbb = rect(i1, ib, *br), rect(i2, ib, *br)
            sab = cross[:, dy % shape[0], dx % shape[1]]
            va, vb = saa - sa * sa / n, sbb - sb * sb / n
            den = np.sqrt(np.maximum(va, 0) * np.maximum(vb, 0))
            corr = np.where(den > eps, (sab - sa * sb / n) / np.maximum(den, eps), 0.0)
            np.maximum(best, corr, out=best)
    return np.clip(best, -1.0, 1.0)


def _aligned_distances(
    images: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    config: DuplicatesAndLeakageConfig,
) -> tuple[np.ndarray, str]:
    """``1 - max NCC`` of image pairs ``(a[p], b[p])`` and the method description."""
    side = int(max(images.shape[-2:]))
    w = min(config.align_size, side)
    # pairs per batch: ~35 MB of working images and ~70 MB of cache rows read
    batch = int(np.clip(min((1 << 22) // (w * w), rows_per_chunk(images, most=1 << 17) // 2),
                        16, 1 << 16))
    scale = w / config.align_size
    max_shift = round(config.align_max_shift * scale)
    blur = config.align_blur * scale
    out = np.empty(a.size, np.float64)
    order = np.argsort(a, kind="stable")  # cache rows read roughly in order
    for s in range(0, a.size, batch):
        sel = order[s : s + batch]
        rows, inv = np.unique(np.concatenate([a[sel], b[sel]]), return_inverse=True)
        work = _working_images(images, rows, w, blur)
        out[sel] = 1.0 - _max_ncc(work, inv[: sel.size], inv[sel.size :], max_shift)
    method = (
        f"1 - max normalized cross-correlation over shifts of up to {max_shift} px of the "
        f"grey image at {w} x {w} px blurred with sigma {blur:.2g} px (brightness, contrast "
        "and small shifts do not count)"
    )
    return np.clip(out, 0.0, 2.0), method


def _near_edges(
    feats: np.ndarray,
    space: str,
    patient: np.ndarray,
    groups: np.ndarray | None,
    config: DuplicatesAndLeakageConfig,
    images: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Calibration]:
    nb = knn(
        feats, config.n_neighbors, metric="cosine", backend=config.neighbors_backend,
        groups=groups, exact_limit=config.exact_limit,
    )  # fmt: skip
    idx = nb.indices
    if space == "pixels":
        # candidates from the coarse kNN, decided by the aligned comparison
        rows, cols = np.nonzero(idx >= 0)
        lo, hi = np.minimum(rows, idx[rows, cols]), np.maximum(rows, idx[rows, cols])
        key, inv = np.unique(lo * np.int64(len(idx)) + hi, return_inverse=True)
        da, how = _aligned_distances(images, key // len(idx), key % len(idx), config)
        dist = np.full(idx.shape, np.inf)
        dist[rows, cols] = da[inv]
        method = f"candidates: {nb.describe()} on block-mean pixels; distance: {how}"
    else:
        dist = nb.distances.astype(np.float64)
        method = f"cosine distance of model embeddings; {nb.describe()}"
        if groups is not None:
            method += "; neighbours searched only among rows embedded by the same fold model"
    thr, rule, ref_n, ref_med, ref_s = _calibrate(_other_patient_r(dist, idx, patient), config)
    rows, cols = np.nonzero((idx >= 0) & (dist <= thr))
    cal = _Calibration(space, thr, rule, method, ref_n, ref_med, ref_s)
    return rows.astype(np.int64), idx[rows, cols], dist[rows, cols], cal


def _dedupe_pairs(
    a: np.ndarray, b: np.ndarray, d: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unordered pairs, each once, with its smallest distance."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * np.int64(n) + hi
    order = np.lexsort((d, key))
    key, d = key[order], d[order]
    keep = np.ones(key.size, bool)
    keep[1:] = key[1:] != key[:-1]
    key, d = key[keep], d[keep]
    return key // n, key % n, d


# --------------------------------------------------------------------------- the check
def _coarse_pixels(images: np.ndarray, size: int) -> np.ndarray:
    """Candidate-search features: block-mean pixels minus the dataset's mean, unit norm.

    Removing the mean (the anatomy every image shares, e.g. a chest outline)
    makes the nearest neighbours those that share the individual detail.
    """
    e = pixel_embedding(images, size=size)
    c = e - e.mean(axis=0, dtype=np.float64).astype(np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", c, c))
    c /= np.where(norm > 0, norm, 1.0)[:, None]
    return c


def _folds_groups(ctx: AuditContext) -> np.ndarray | None:
    """Which fold model embedded each row (holdout rows: the fold-0 model)."""
    if not ctx.has("folds"):
        return None
    folds = np.asarray(ctx.get("folds")).astype(np.int64)
    return np.where(folds < 0, 0, folds)


def _partition(ctx: AuditContext, column: str) -> tuple[np.ndarray | None, str | None]:
    """Partition label per row (``None`` = unknown) and the column it came from."""
    if column in ctx.manifest.columns:
        col = ctx.manifest[column]
        values = np.where(col.isna(), None, col.astype(str)).astype(object)
        return values, column
    if ctx.has("folds"):
        folds = np.asarray(ctx.get("folds"))
        if (folds < 0).any() and (folds >= 0).any():
            return np.where(folds < 0, "holdout", "cross-validation").astype(object), "folds"
    return None, None


def _span_patients(patient: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Rows of patients whose known ``part`` values are more than one."""
    df = pd.DataFrame({"p": patient, "v": part})
    df = df[df["v"].notna()]
    if df.empty:
        return np.empty(0, np.int64)
    n_values = df.groupby("p", sort=False)["v"].nunique()
    bad = n_values.index[n_values > 1]
    return df.index[df["p"].isin(bad)].to_numpy(dtype=np.int64)


def _listed_pairs(
    a: np.ndarray, b: np.ndarray, d: np.ndarray, exact: np.ndarray, sid: np.ndarray, cap: int
) -> list[dict[str, Any]]:
    order = np.argsort(d, kind="stable")[:cap]
    return [
        {"sample_id_a": str(sid[a[i]]), "sample_id_b": str(sid[b[i]]),
         "distance": round(float(d[i]), 6), "kind": "exact" if exact[i] else "near"}
        for i in order
    ]  # fmt: skip


def check_duplicates_and_leakage(
    ctx: AuditContext, config: DuplicatesAndLeakageConfig
) -> list[Finding]:
    """Find exact and near-duplicate images and patient leakage across partitions and folds.

    Parameters
    ----------
    ctx : AuditContext
        Needs ``images`` ``(N, C, S, S)``; uses ``embeddings`` ``(N, D)`` when
        ``near_duplicate_space`` asks for them, ``folds`` ``(N,)`` when present,
        and the manifest's ``patient_key`` and ``split_column``.
    config : DuplicatesAndLeakageConfig
        Thresholds and search settings.

    Returns
    -------
    list of Finding
        Critical: duplicates across patient IDs, leakage across the split
        column, patients split across folds. Warning: duplicates straddling
        folds, exact copies within a patient. Info: near-copies within a
        patient. Pass when nothing is found.
    """
    n = ctx.n
    sid = ctx.sample_ids
    patient = ctx.manifest["patient_key"].astype(str).to_numpy(dtype=object)
    images = ctx.get("images")

    # -- detection ----------------------------------------------------------------
    codes = _pixel_hashes(images)
    ea, eb = _exact_edges(codes)
    parts_a, parts_b, parts_d = [ea], [eb], [np.zeros(ea.size)]
    calibrations: list[_Calibration] = []
    spaces: list[str] = []
    if config.near_duplicate_space in ("pixels", "both"):
        spaces.append("pixels")
    if config.near_duplicate_space in ("embeddings", "both"):
        spaces.append("embeddings" if ctx.has("embeddings") else "pixels")
    for space in dict.fromkeys(spaces):
        if n < 3:
            break
        if space == "pixels":
            feats, groups = _coarse_pixels(images, config.pixel_embedding_size), None
        else:
            feats = ctx.get("embeddings")
            groups = None if config.embeddings_from_one_model else _folds_groups(ctx)
        a, b, d, cal = _near_edges(feats, space, patient, groups, config, images)
        parts_a.append(a)
        parts_b.append(b)
        parts_d.append(d)
        calibrations.append(cal)
    a, b, d = _dedupe_pairs(
        np.concatenate(parts_a), np.concatenate(parts_b), np.concatenate(parts_d), max(n, 1)
    )
    exact = codes[a] == codes[b]
    d = np.where(exact, 0.0, d)

    detection: dict[str, Any] = {
        "exact": _EXACT_METHOD,
        "near": [c.to_evidence() for c in calibrations],
        "n_exact_duplicate_pairs": int(exact.sum()),
        "n_near_duplicate_pairs": int((~exact).sum()),
    }

    # -- duplicate groups -------------------------------------------------------------
    if a.size:
        graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        sizes = np.bincount(comp)
        in_group = sizes[comp] > 1
    else:
        comp = np.arange(n)
        in_group = np.zeros(n, bool)
    rows = np.flatnonzero(in_group)
    part, part_col = _partition(ctx, config.split_column)
    folds = np.asarray(ctx.get("folds")).astype(np.int64) if ctx.has("folds") else None
    gdf = pd.DataFrame({"g": comp[rows], "p": patient[rows]}, index=rows)
    if part is not None:
        gdf["s"] = part[rows]
    if folds is not None:
        gdf["f"] = np.where(folds[rows] >= 0, folds[rows], np.nan)
    agg = gdf.groupby("g", sort=False).agg(
        n_patients=("p", "nunique"),
        **({"n_parts": ("s", "nunique")} if part is not None else {}),
        **({"n_folds": ("f", "nunique")} if folds is not None else {}),
    )
    cross_patient_g = agg.index[agg["n_patients"] > 1]
    split_g = agg.index[agg["n_parts"] > 1] if part is not None else agg.index[:0]
    fold_g = agg.index[agg["n_folds"] > 1] if folds is not None else agg.index[:0]
    flagged = set(cross_patient_g) | set(split_g) | set(fold_g)
    within_g = agg.index[~agg.index.isin(list(flagged))]

    # closest pair distance per group orders groups and their rows
    pair_g = comp[a]
    gmin = pd.Series(d).groupby(pair_g).min() if a.size else pd.Series(dtype=float)

    def rows_of(groups: Any) -> np.ndarray:
        sel = gdf[gdf["g"].isin(list(groups))]
        key = gmin.reindex(sel["g"]).to_numpy()
        return sel.index.to_numpy()[np.lexsort((sel["g"].to_numpy(), key))]

    def pairs_of(groups: Any) -> tuple[np.ndarray, dict[str, Any]]:
        m = np.isin(pair_g, np.asarray(list(groups)))
        ev = {
            "n_groups": len(groups),
            "n_pairs": int(m.sum()),
            "n_exact_pairs": int((m & exact).sum()),
            "n_near_pairs": int((m & ~exact).sum()),
            "pairs": _listed_pairs(a[m], b[m], d[m], exact[m], sid, config.max_pairs_listed),
        }
        return m, ev

    cap = config.max_sample_ids
    findings: list[Finding] = []

    if len(cross_patient_g):
        r = rows_of(cross_patient_g)
        _, ev = pairs_of(cross_patient_g)
        findings.append(Finding(
            check=NAME, severity="critical", title=TITLE_CROSS_PATIENT,
            message=MSG_CROSS_PATIENT.format(groups=len(cross_patient_g), images=r.size),
            evidence={**ev, "n_images": int(r.size),
                      "n_patient_ids": int(pd.unique(patient[r]).size), "detection": detection},
            sample_ids=list(sid[r[:cap]]), recommendation=REC_CROSS_PATIENT,
            references=_REFS_PARTITION,
        ))  # fmt: skip

    if part is not None:
        span_rows = _span_patients(patient, part)
        if span_rows.size or len(split_g):
            dup_rows = rows_of(split_g)
            r = np.concatenate([dup_rows, np.setdiff1d(span_rows, dup_rows)])
            _, ev = pairs_of(split_g)
            ev = {f"duplicate_{k}": v for k, v in ev.items()}
            column = str(part_col)
            findings.append(Finding(
                check=NAME, severity="critical", title=TITLE_SPLIT_LEAKAGE.format(column=column),
                message=MSG_SPLIT_LEAKAGE.format(
                    column=column, patients=int(pd.unique(patient[span_rows]).size),
                    groups=len(split_g), images=r.size),
                evidence={"partition_column": column,
                          "n_patients_spanning": int(pd.unique(patient[span_rows]).size),
                          "n_images_of_spanning_patients": int(span_rows.size), **ev,
                          "n_images": int(r.size), "detection": detection},
                sample_ids=list(sid[r[:cap]]), recommendation=REC_SPLIT_LEAKAGE,
                references=_REFS_PARTITION,
            ))  # fmt: skip

    if folds is not None:
        cv = np.where(folds >= 0, folds, np.nan).astype(object)
        cv[folds < 0] = None
        span_rows = _span_patients(patient, cv)
        if span_rows.size or len(fold_g):
            dup_rows = rows_of(fold_g)
            r = np.concatenate([dup_rows, np.setdiff1d(span_rows, dup_rows)])
            _, ev = pairs_of(fold_g)
            ev = {f"duplicate_{k}": v for k, v in ev.items()}
            n_span = int(pd.unique(patient[span_rows]).size)
            if n_span:
                title, severity = TITLE_FOLD_LEAKAGE, "critical"
                message = MSG_FOLD_LEAKAGE.format(patients=n_span, images=span_rows.size,
                                                  groups=len(fold_g))
            else:
                title, severity = TITLE_FOLD_LEAKAGE_DUPLICATES, "warning"
                message = MSG_FOLD_LEAKAGE_DUPLICATES.format(groups=len(fold_g), images=r.size)
            findings.append(Finding(
                check=NAME, severity=severity, title=title, message=message,
                evidence={"n_patients_spanning_folds": n_span,
                          "n_images_of_spanning_patients": int(span_rows.size), **ev,
                          "n_images": int(r.size), "detection": detection},
                sample_ids=list(sid[r[:cap]]), recommendation=REC_FOLD_LEAKAGE,
                references=_REFS_PARTITION,
            ))  # fmt: skip

    if len(within_g):
        r = rows_of(within_g)
        m, ev = pairs_of(within_g)
        n_exact_groups = int(pd.unique(pair_g[m & exact]).size)
        findings.append(Finding(
            check=NAME, severity="warning" if n_exact_groups else "info",
            title=TITLE_WITHIN_PATIENT,
            message=MSG_WITHIN_PATIENT.format(groups=len(within_g), images=r.size,
                                              exact=ev["n_exact_pairs"], near=ev["n_near_pairs"]),
            evidence={**ev, "n_groups_with_exact_copies": n_exact_groups,
                      "n_images": int(r.size), "detection": detection},
            sample_ids=list(sid[r[:cap]]), recommendation=REC_WITHIN_PATIENT,
            references=_REFS_QUALITY,
        ))  # fmt: skip

    if not findings:
        findings.append(Finding(
            check=NAME, severity="pass", title=TITLE_PASS, message=MSG_PASS,
            evidence={"n_images": n, "partition_column": part_col,
                      "folds_checked": folds is not None, "detection": detection},
            references=_REFS_PARTITION,
        ))  # fmt: skip
    return findings


def sample_table(ctx: AuditContext, config: DuplicatesAndLeakageConfig) -> pd.DataFrame:
    """The full per-image table behind the findings (they list the closest pairs only).

    Runs the check with every pair and every affected image listed, so the
    table and the findings come from one detection.

    Parameters
    ----------
    ctx : AuditContext
        As for :func:`check_duplicates_and_leakage`.
    config : DuplicatesAndLeakageConfig
        The settings of the audit.

    Returns
    -------
    pandas.DataFrame
        N rows in manifest order: ``sample_id``, ``patient_key``,
        ``duplicate_group`` (-1 = none), ``group_size``, ``n_patients_in_group``,
        ``nearest_duplicate`` (sample id), ``nearest_duplicate_distance``
        (``1 - correlation``; 0 for exact copies), ``is_exact_duplicate``,
        ``is_near_duplicate``, ``is_cross_patient_duplicate``,
        ``is_split_leakage``, ``is_fold_leakage``.
    """
    import dataclasses
    import sys

    full = dataclasses.replace(config, max_pairs_listed=sys.maxsize, max_sample_ids=sys.maxsize)
    findings = check_duplicates_and_leakage(ctx, full)
    n, sid = ctx.n, ctx.sample_ids
    patient = ctx.manifest["patient_key"].astype(str).to_numpy(dtype=object)
    row = {s: i for i, s in enumerate(sid)}
    pairs: dict[tuple[int, int], tuple[float, bool]] = {}
    flags = {c: np.zeros(n, bool) for c in ("is_cross_patient_duplicate", "is_split_leakage",
                                            "is_fold_leakage")}
    split_title = TITLE_SPLIT_LEAKAGE.split("{")[0]
    for f in findings:
        for pr in f.evidence.get("pairs", []) + f.evidence.get("duplicate_pairs", []):
            i, j = sorted((row[pr["sample_id_a"]], row[pr["sample_id_b"]]))
            pairs[(i, j)] = (float(pr["distance"]), pr["kind"] == "exact")
        rows = [row[s] for s in f.sample_ids]
        if f.title == TITLE_CROSS_PATIENT:
            flags["is_cross_patient_duplicate"][rows] = True
        elif f.title.startswith(split_title):
            flags["is_split_leakage"][rows] = True
        elif f.title in (TITLE_FOLD_LEAKAGE, TITLE_FOLD_LEAKAGE_DUPLICATES):
            flags["is_fold_leakage"][rows] = True
    a = np.array([k[0] for k in pairs], np.int64)
    b = np.array([k[1] for k in pairs], np.int64)
    d = np.array([v[0] for v in pairs.values()], np.float64)
    exact = np.array([v[1] for v in pairs.values()], bool)
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    size = np.bincount(comp)[comp]
    group = np.full(n, -1, np.int64)
    grouped = size > 1
    group[grouped] = pd.factorize(comp[grouped])[0]
    n_pat = pd.Series(patient).groupby(comp).transform("nunique").to_numpy()
    nearest = np.full(n, None, dtype=object)
    dist = np.full(n, np.nan)
    is_exact, is_near = np.zeros(n, bool), np.zeros(n, bool)
    for x, y, dx, ex in zip(np.r_[a, b], np.r_[b, a], np.r_[d, d], np.r_[exact, exact],
                            strict=True):
        if not dx >= dist[x]:  # NaN (no partner yet) or closer
            dist[x], nearest[x] = dx, sid[y]
        is_exact[x] |= ex
        is_near[x] |= not ex
    return pd.DataFrame({
        "sample_id": sid, "patient_key": patient, "duplicate_group": group,
        "group_size": size, "n_patients_in_group": np.where(grouped, n_pat, 1),
        "nearest_duplicate": nearest, "nearest_duplicate_distance": dist,
        "is_exact_duplicate": is_exact, "is_near_duplicate": is_near, **flags,
    })  # fmt: skip


SPEC = CheckSpec(
    name=NAME,
    func=check_duplicates_and_leakage,
    config_cls=DuplicatesAndLeakageConfig,
    requires=("images",),
    table=sample_table,
    description=(
        "exact (pixel hash) and near-duplicate images (calibrated nearest neighbours); "
        "duplicates across patient IDs; leakage across the split column and CV folds"
    ),
)
