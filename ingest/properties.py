"""Cheap per-image statistics for shortcut probes and outlier checks.

Computed vectorised over the image cache in chunks (memory bounded), on the
grey level (mean over channels) scaled to ``[0, 1]``.

Columns of ``image_properties.parquet`` (one row per manifest row):

==========================  ====================================================
``mean_intensity``          mean grey level
``std_intensity``           standard deviation of the grey level
``p01``, ``p05``, ``p50``,  grey-level percentiles
``p95``, ``p99``
``contrast``                ``p95 - p05``
``black_fraction``          fraction of pixels below 0.04 (near black)
``saturated_fraction``      fraction of pixels at or above 0.98
``border_black_fraction``   fraction of near-black pixels in the outer frame
                            (width 8 % of the side): black borders, collimation
``corner_mark_score``       max over the 4 corners (squares of 15 % of the side)
                            of the fraction of pixels brighter than both 0.75 and
                            the patch median + 0.3 (bright on a locally darker
                            background): burned-in text, laterality markers, rulers
``corner_mark_corner``      which corner had that max (0 TL, 1 TR, 2 BL, 3 BR)
``edge_mark_score``         the same on the four edge midpoints
``has_corner_mark``         ``corner_mark_score >= 0.02``
``orig_height``,            size before resizing, aspect ratio, bits stored
``orig_width``,             (from the decoder's metadata)
``aspect_ratio``,
``bits_stored``
==========================  ====================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["CORNER_MARK_THRESHOLD", "compute_image_properties"]

BLACK = 0.04
SATURATED = 0.98
BORDER_FRAC = 0.08
CORNER_FRAC = 0.15
#: ``corner_mark_score`` at or above which ``has_corner_mark`` is True.
CORNER_MARK_THRESHOLD = 0.02
MARK_MIN = 0.75
MARK_LOCAL_CONTRAST = 0.3


def _patch_mark_fraction(gray: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Fraction of bright, locally high-contrast pixels in one patch of every image."""
    patch = gray[:, rows, cols]
    med = np.median(patch.reshape(len(patch), -1), axis=1)
    thr = np.maximum(MARK_MIN, med + MARK_LOCAL_CONTRAST)
    return (patch > thr[:, None, None]).mean(axis=(1, 2))


def _chunk_properties(images: np.ndarray) -> dict[str, np.ndarray]:
    """Properties of a chunk ``(n, C, S, S)`` uint8 (or float in [0, 1])."""
    x = images.astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255.0
    gray = x.mean(axis=1)  # (n, S, S)
    n, h, w = gray.shape
    flat = gray.reshape(n, -1)
    pct = np.percentile(flat, [1, 5, 50, 95, 99], axis=1)
    out: dict[str, np.ndarray] = {
        "mean_intensity": flat.mean(axis=1),
        "std_intensity": flat.std(axis=1),
        "p01": pct[0], "p05": pct[1], "p50": pct[2], "p95": pct[3], "p99": pct[4],
        "contrast": pct[3] - pct[1],
        "black_fraction": (flat < BLACK).mean(axis=1),
        "saturated_fraction": (flat >= SATURATED).mean(axis=1),
    }  # fmt: skip
    b = max(1, round(BORDER_FRAC * min(h, w)))
    frame = np.ones((h, w), dtype=bool)
    frame[b:-b, b:-b] = False
    out["border_black_fraction"] = (gray[:, frame] < BLACK).mean(axis=1)
    c = max(2, round(CORNER_FRAC * min(h, w)))
    corners = [
        (slice(0, c), slice(0, c)), (slice(0, c), slice(w - c, w)),
        (slice(h - c, h), slice(0, c)), (slice(h - c, h), slice(w - c, w)),
    ]  # fmt: skip
    cs = np.stack([_patch_mark_fraction(gray, r, cc) for r, cc in corners], axis=1)
    mh, mw = h // 2 - c // 2, w // 2 - c // 2
    edges = [
        (slice(0, c), slice(mw, mw + c)), (slice(h - c, h), slice(mw, mw + c)),
        (slice(mh, mh + c), slice(0, c)), (slice(mh, mh + c), slice(w - c, w)),
    ]  # fmt: skip
    es = np.stack([_patch_mark_fraction(gray, r, cc) for r, cc in edges], axis=1)
    out["corner_mark_score"] = cs.max(axis=1)
    out["corner_mark_corner"] = cs.argmax(axis=1).astype(np.int8)
    out["edge_mark_score"] = es.max(axis=1)
    return out


def compute_image_properties(
    images: np.ndarray,
    sample_ids: Sequence[str],
    *,
    orig_height: Sequence[float] | None = None,
    orig_width: Sequence[float] | None = None,
    bits_stored: Sequence[float | None] | None = None,
    chunk: int = 2048,
) -> pd.DataFrame:
    """Per-image statistics of the cache.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, S, S)`` uint8 (or float in ``[0, 1]``); a memory map is fine.
    sample_ids : sequence of str
        N ids, written as the first column.
    orig_height, orig_width, bits_stored : sequence, optional
        N values from the decoders (NaN where unknown).
    chunk : int
        Images processed at once (memory ~ ``chunk * S * S * 4`` bytes x 3).

    Returns
    -------
    pandas.DataFrame
        N rows, ``sample_id`` then the columns listed in the module docstring.
    """
    n = images.shape[0]
    if len(sample_ids) != n:
        raise ValueError(f"sample_ids has {len(sample_ids)} entries but images has {n} rows")
    parts = [_chunk_properties(np.asarray(images[i : i + chunk])) for i in range(0, n, chunk)]
    cols = {k: np.concatenate([p[k] for p in parts]) if parts else np.empty(0) for k in
            (parts[0] if parts else {})}
    df = pd.DataFrame({"sample_id": list(map(str, sample_ids)), **cols})
    df["has_corner_mark"] = df.get("corner_mark_score", pd.Series(dtype=float)) >= CORNER_MARK_THRESHOLD
    h = np.asarray(orig_height if orig_height is not None else [np.nan] * n, dtype=float)
    w = np.asarray(orig_width if orig_width is not None else [np.nan] * n, dtype=float)
    df["orig_height"] = h
    df["orig_width"] = w
    with np.errstate(invalid="ignore", divide="ignore"):
        df["aspect_ratio"] = w / h
    df["bits_stored"] = pd.array(
        [None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)
         for v in (bits_stored if bits_stored is not None else [None] * n)],
        dtype="Int64",
    )
    float_cols = df.select_dtypes("float64").columns
    df[float_cols] = df[float_cols].astype("float32")
    return df
