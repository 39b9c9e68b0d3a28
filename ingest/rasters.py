"""Readers for non-DICOM images: PNG, JPEG, TIFF (Pillow) and ``.npy`` arrays.

Every reader returns float32 pixels in ``[0, 1]``, shape ``(H, W)`` or
``(H, W, 3)``, higher = brighter, plus non-identifying metadata. Integer images
are scaled by their bit depth (``uint8`` / 255, 16-bit by the maximum of the
dtype unless the values fit in 12 bits, a common medical-PNG case), float
arrays are min-max scaled. Alpha channels are dropped; palette images are
converted to RGB.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ingest.limits import DEFAULT_MAX_IMAGE_MIB, decoded_size_problem, regular_file_problem

__all__ = ["RASTER_SUFFIXES", "ImageReadError", "normalize_array", "read_raster"]

#: File endings read by :func:`read_raster` (lower case).
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")


class ImageReadError(ValueError):
    """An image file could not be read; ``str(err)`` is one line with the fix."""


def normalize_array(arr: np.ndarray, *, source: str) -> tuple[np.ndarray, dict[str, object]]:
    """Scale an image array to float32 ``[0, 1]`` and check its shape.

    Parameters
    ----------
    arr : numpy.ndarray
        ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped);
        integer or float.
    source : str
        Named in error messages.

    Returns
    -------
    pixels : numpy.ndarray
        float32, ``(H, W)`` or ``(H, W, 3)``.
    meta : dict
        ``bits_stored`` (inferred for integers), ``rows``, ``columns``,
        ``samples_per_pixel``.

    Raises
    ------
    ImageReadError
        For an unusable shape, an unsupported dtype or non-finite values.
    """
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = arr[..., 0] if arr.shape[-1] == 1 else arr[..., :3]
    if arr.ndim not in (2, 3) or min(arr.shape[:2]) < 2:
        raise ImageReadError(
            f"{source}: image of unusable shape {arr.shape}; expected (H, W) or (H, W, 3) "
            "with H, W >= 2 (3-D volumes: export one slice per file)"
        )
    bits: int | None = None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind in "iu":
        lo = float(arr.min())
        hi = float(arr.max())
        if arr.dtype.kind == "u" and arr.dtype.itemsize == 1:
            bits, scale, offset = 8, 255.0, 0.0
        elif arr.dtype.kind == "u" and hi < 4096:
            bits, scale, offset = 12, 4095.0, 0.0
        elif arr.dtype.kind == "u":
            bits, scale, offset = 8 * arr.dtype.itemsize, float(np.iinfo(arr.dtype).max), 0.0
        else:  # signed: min-max
            bits, scale, offset = 8 * arr.dtype.itemsize, max(hi - lo, 1.0), lo
        pixels = (arr.astype(np.float32) - offset) / scale
    elif arr.dtype.kind == "f":
        pixels = arr.astype(np.float32)
        if not np.isfinite(pixels).all():
            raise ImageReadError(f"{source}: image has NaN or infinite values; fix or drop the file")
        lo, hi = float(pixels.min()), float(pixels.max())
        if lo < 0.0 or hi > 1.0:
            pixels = (pixels - lo) / max(hi - lo, 1e-12)
    else:
        raise ImageReadError(
            f"{source}: unsupported pixel dtype {arr.dtype}; expected an integer or float array"
        )
    meta: dict[str, object] = {
        "bits_stored": bits,
        "rows": int(pixels.shape[0]),
        "columns": int(pixels.shape[1]),
        "samples_per_pixel": 1 if pixels.ndim == 2 else 3,
    }
    return np.clip(pixels, 0.0, 1.0, out=pixels), meta


def read_raster(
    path: str | os.PathLike[str], *, max_image_mib: float = DEFAULT_MAX_IMAGE_MIB
) -> tuple[np.ndarray, dict[str, object]]:
    """Read a PNG / JPEG / TIFF / BMP (Pillow) or ``.npy`` image.

    Parameters
    ----------
    path : path-like
        The file (a regular file: devices and pipes are refused before reading).
    max_image_mib : float
        Refuse images whose decoded size (see :mod:`ingest.limits`) exceeds this.

    Returns
    -------
    pixels : numpy.ndarray
        float32 in ``[0, 1]``, ``(H, W)`` or ``(H, W, 3)``.
    meta : dict
        See :func:`normalize_array`, plus ``format``.

    Raises
    ------
    ImageReadError
        When the file is missing, unreadable or of an unusable shape.
    """
    p = Path(path)
    problem = regular_file_problem(p)
    if problem is not None:
        hint = "check the path (relative to the manifest)" if "no such" in problem else \
            "list image files only"
        raise ImageReadError(f"{p}: {problem}; {hint}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ImageReadError(f"{p}: not a readable .npy array ({err})") from None
        shape = (*arr.shape, 1, 1)
        too_large = decoded_size_problem(shape[0], shape[1], int(np.prod(arr.shape[2:])),
                                         limit_mib=max_image_mib)
        if too_large:
            raise ImageReadError(f"{p}: {too_large}")
        pixels, meta = normalize_array(np.asarray(arr), source=str(p))
        meta["format"] = "NPY"
        return pixels, meta
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im_ctx = Image.open(p)
        with im_ctx as im:
            fmt = im.format
            bands = 3 if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV") else \
                len(im.getbands())
            too_large = decoded_size_problem(im.size[1], im.size[0], bands,
                                             limit_mib=max_image_mib)
            if too_large:
                raise ImageReadError(f"{p}: {too_large}")
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            elif im.mode == "LA":
                im = im.convert("L")
            arr = np.asarray(im)
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"{p}: refused as a decompression bomb ({err})") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{p}: not an image Pillow can read; expected PNG, JPEG, TIFF or BMP"
        ) from None
    except OSError as err:  # truncated or corrupt
        raise ImageReadError(f"{p}: corrupt or truncated image ({err}); re-export the file") from None
    pixels, meta = normalize_array(arr, source=str(p))
    meta["format"] = fmt
    return pixels, meta
