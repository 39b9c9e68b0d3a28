"""Read one DICOM file into a display-ready image and split its header into
non-identifying acquisition metadata and raw identifiers.

This module is the only place in medaudit that turns DICOM pixel data into
numbers; everything downstream (image cache, image properties, models) sees
``float32`` arrays in ``[0, 1]`` where *higher means brighter as displayed*.

Policies
--------
Decoding
    Pixel data are decoded by pydicom 3 (:mod:`pydicom.pixels`) with whatever
    plugins are installed (``pylibjpeg-libjpeg`` for JPEG and JPEG-LS,
    ``pylibjpeg-openjpeg`` for JPEG 2000 / HTJ2K, pydicom's own RLE decoder,
    optionally ``python-gdcm`` and ``pillow``). pydicom masks unused high bits
    (Bits Stored), sign-extends signed pixels (Pixel Representation 1) and
    converts ``YBR_FULL`` / ``YBR_FULL_422`` / ``YBR_ICT`` / ``YBR_RCT`` to RGB while
    decoding.
Frames
    A multi-frame object yields ONE frame, chosen by ``frame_policy``:
    ``"middle"`` (default, index ``n // 2``) or ``"first"`` (index 0). Only that
    frame is decoded. ``meta`` records ``number_of_frames``, ``frame_used`` and
    ``frame_policy``. For enhanced multi-frame objects the frame's own Pixel
    Value Transformation (rescale) and Frame VOI LUT (window) functional groups
    are used (per-frame before shared before top level).
Grayscale (``MONOCHROME1`` / ``MONOCHROME2``)
    1. Modality LUT: the Modality LUT Sequence, else Rescale Slope / Intercept
       (if only one of the two is present the other takes its default, 1 or 0).
    2. VOI: the first item of the VOI LUT Sequence (``windowing='voi_lut'``),
       else the FIRST Window Center / Width pair (``windowing='window'``,
       honouring VOI LUT Function LINEAR / LINEAR_EXACT / SIGMOID), else plain
       min-max over the frame (``windowing='minmax'``; no percentile clipping,
       so the mapping is exact and invertible). A window whose width is not a
       positive number is ignored (min-max is used instead).
    3. The VOI output is scaled to ``[0, 1]`` by the VOI output range: for a
       window, pydicom's output range for the dataset; for a VOI LUT, the range
       of the LUT's own entries (the LUT Descriptor bit depth is often wrong).
    4. ``MONOCHROME1`` is inverted (``1 - x``) AFTER the VOI step, so that a
       higher value is always brighter as displayed. Presentation LUT Shape is
       not applied (for MONOCHROME1 it restates the same inversion).
    A constant image maps to all zeros (all ones for MONOCHROME1).
Colour
    ``RGB`` stays ``(H, W, 3)``; any ``YBR_FULL*`` left after decoding is
    converted with :func:`pydicom.pixels.convert_color_space`; ``PALETTE COLOR``
    is expanded with :func:`pydicom.pixels.apply_color_lut`. Colour values are
    divided by the largest value their bit depth allows (``2**BitsStored - 1``
    for RGB; 255 or 65535 for palette LUT output) - ``windowing='bit_depth'``.
    No modality or VOI transform is applied to colour images.
Refusals
    Every per-file problem raises :class:`DicomReadError`, whose ``str`` is one
    line saying what was expected, what arrived, where (the path) and the fix,
    and whose ``code`` is a short fixed reason code. Other exception types only
    signal programming errors (e.g. an invalid ``frame_policy``).
Privacy
    ``meta`` holds acquisition facts only. Names, IDs, UIDs, dates, accession
    numbers and institution names never enter it; the identifying values the
    pipeline needs come back raw in ``identifiers`` so that the caller can
    pseudonymise them with a keyed hash.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, get_args

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_windowing,
    as_pixel_options,
    convert_color_space,
    get_decoder,
)
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLETransferSyntaxes,
)
from pydicom.valuerep import DSfloat

from ingest.limits import DEFAULT_MAX_IMAGE_MIB, decoded_size_problem, regular_file_problem

__all__ = [
    "FRAME_POLICIES",
    "FRAME_POLICY",
    "IDENTIFIER_KEYS",
    "META_KEYS",
    "WINDOWING",
    "DicomImage",
    "DicomReadError",
    "read_dicom",
    "read_dicom_header",
]

FRAME_POLICY: TypeAlias = Literal["middle", "first"]
"""Which frame of a multi-frame object is used: ``"middle"`` (index ``n // 2``) or
``"first"`` (index 0)."""

FRAME_POLICIES: Final[tuple[str, ...]] = get_args(FRAME_POLICY)

WINDOWING: TypeAlias = Literal["voi_lut", "window", "minmax", "bit_depth"]
"""How intensities were mapped to ``[0, 1]`` (``meta['windowing']``)."""

META_KEYS: Final[tuple[str, ...]] = (
    "modality",
    "sex",
    "age",
    "view",
    "body_part",
    "scanner",
    "manufacturer",
    "photometric_interpretation",
    "bits_stored",
    "bits_allocated",
    "pixel_representation",
    "transfer_syntax",
    "transfer_syntax_uid",
    "rows",
    "columns",
    "pixel_spacing_mm",
    "number_of_frames",
    "frame_used",
    "frame_policy",
    "samples_per_pixel",
    "windowing",
    "rescale_slope",
    "rescale_intercept",
)
"""Keys of :attr:`DicomImage.meta`, always all present (``None`` when unknown)."""

IDENTIFIER_KEYS: Final[dict[str, str]] = {
    "patient_id": "PatientID",
    "study_instance_uid": "StudyInstanceUID",
    "sop_instance_uid": "SOPInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "institution_name": "InstitutionName",
    "accession_number": "AccessionNumber",
}
"""Keys of :attr:`DicomImage.identifiers` and the DICOM keyword each comes from."""

# --------------------------------------------------------------------------- messages
# One template per refusal; tests match on them. Fields are filled by ``_fail``.
_MSG_NOT_FOUND: Final = (
    "DICOM input must be an existing file; got no file at path={path!r}; "
    "check the path in the manifest and the image root"
)
_MSG_IS_DIRECTORY: Final = (
    "DICOM input must be a file; got a directory at path={path!r}; "
    "list the image files inside it instead"
)
_MSG_NOT_REGULAR: Final = (
    "DICOM input must be a regular file; got a path that {problem} at path={path!r}; "
    "list image files only"
)
_MSG_TOO_LARGE: Final = "refused before decoding at path={path!r}: {detail}"
_MSG_UNREADABLE: Final = (
    "DICOM input must be readable; got {error} at path={path!r}; "
    "fix the file permissions or copy the file locally"
)
_MSG_NOT_DICOM: Final = (
    "input must be a DICOM file (128-byte preamble + 'DICM', or a bare dataset with "
    "(0008,0016) 'SOPClassUID' or (7FE0,0010) 'PixelData'); got {error}, not a DICOM "
    "file, at path={path!r}; remove it from the input or convert it to DICOM"
)
_NOT_DICOM_NO_ELEMENTS: Final = "a file with no 'DICM' prefix and no DICOM image elements"
_MSG_CORRUPT_HEADER: Final = (
    "DICOM dataset must be parseable; got {error} while reading the header at "
    "path={path!r}; the file is truncated or corrupt: re-export or re-transfer it"
)
_MSG_NO_PIXEL_DATA: Final = (
    "DICOM file must hold an image in (7FE0,0010) 'PixelData'; got a dataset without "
    "pixel data (SOP Class: {sop_class}) at path={path!r}; exclude non-image DICOM (structured "
    "reports, RT plans/structures, DICOMDIR, waveforms) from the image input"
)
_MSG_PIXEL_DATA_CUT_OFF: Final = (
    "(7FE0,0010) 'PixelData' must follow the Image Pixel module; got (0028,0010) 'Rows' "
    "= {rows} and (0028,0011) 'Columns' = {columns} but no pixel data element at "
    "path={path!r}; the file is most likely truncated: re-export or re-transfer it"
)
_MSG_EMPTY_DATASET: Final = (
    "DICOM file must hold a dataset after its file meta header; got an empty dataset "
    "(the file ends inside an undefined-length element such as encapsulated (7FE0,0010) "
    "'PixelData') at path={path!r}; the file is truncated: re-export or re-transfer it"
)
_MSG_BAD_NUMBER_OF_FRAMES: Final = (
    "(0028,0008) 'NumberOfFrames' must be a positive integer; got {value!r} at "
    "path={path!r}; fix the header or exclude the file"
)
_MSG_UNSUPPORTED_TRANSFER_SYNTAX: Final = (
    "(0002,0010) 'TransferSyntaxUID' must be one pydicom can decode; got '{ts_name}' "
    "({ts_uid}) at path={path!r}; convert the file to an uncompressed transfer syntax "
    "(e.g. 'gdcmconv --raw' or 'dcmdjpeg')"
)
_MSG_MISSING_DECODER: Final = (
    "decoding (7FE0,0010) 'PixelData' in transfer syntax '{ts_name}' needs a decoder "
    "plugin; got none installed (pydicom: {missing}) for path={path!r}; install {packages}"
)
_MSG_TRUNCATED: Final = (
    "(7FE0,0010) 'PixelData' must hold every pixel that (0028,0010) 'Rows' x (0028,0011) "
    "'Columns' x frames require; got truncated pixel data ({error}) at path={path!r}; "
    "the file is truncated or corrupt: re-export or re-transfer it"
)
_MSG_BAD_PIXEL_MODULE: Final = (
    "the Image Pixel module (group 0028) must describe (7FE0,0010) 'PixelData' "
    "consistently; got {error} at path={path!r}; fix the header values or exclude the file"
)
_MSG_DECODE_FAILED: Final = (
    "(7FE0,0010) 'PixelData' in transfer syntax '{ts_name}' must decode; got {error} "
    "at path={path!r}; the pixel data may be corrupt, or need another decoder: "
    "install {packages}"
)
_MSG_UNSUPPORTED_PHOTOMETRIC: Final = (
    "(0028,0004) 'PhotometricInterpretation' must be MONOCHROME1, MONOCHROME2, RGB, "
    "YBR_FULL, YBR_FULL_422 or PALETTE COLOR (with a matching (0028,0002) "
    "'SamplesPerPixel'); got {value!r} with decoded shape {shape} at path={path!r}; "
    "convert the file to MONOCHROME2 or RGB"
)
_MSG_UNUSABLE_SHAPE: Final = (
    "image must be at least 2 x 2 pixels; got image of unusable shape {shape} from "
    "(0028,0010) 'Rows' and (0028,0011) 'Columns' at path={path!r}; exclude the file"
)
_MSG_NON_FINITE: Final = (
    "image must be finite after the modality and VOI transforms; got {count} NaN or "
    "infinite values at path={path!r}; check (0028,1053) 'RescaleSlope', (0028,1052) "
    "'RescaleIntercept' and the pixel data, or exclude the file"
)

_MSG_UNEXPECTED: Final = (
    "DICOM file must be readable by medaudit; got an unexpected {error} at "
    "path={path!r}; exclude the file and report this error with the file's header"
)

_MAX_DETAIL_CHARS: Final = 240
_MIN_SIDE: Final = 2

_PIXEL_KEYWORDS: Final = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_MONOCHROME: Final = ("MONOCHROME1", "MONOCHROME2")
_YBR_TO_CONVERT: Final = ("YBR_FULL", "YBR_FULL_422")

# Elements the grayscale transforms read; copied into a per-frame view dataset.
_VIEW_KEYWORDS: Final = (
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
)
# Enhanced multi-frame functional-group macros that override top-level values.
_FUNCTIONAL_GROUP_MACROS: Final = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}

_AGE_PATTERN: Final = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
_AGE_UNIT_YEARS: Final = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


class DicomReadError(ValueError):
    """A DICOM file could not be turned into an image.

    ``str(err)`` is ONE line: what was expected, what arrived, which tag, where
    (the path) and how to fix it - ready for ``quarantine.csv``.

    Parameters
    ----------
    message : str
        The one-line reason.
    code : str, optional
        Short fixed reason code, one of ``not_found``, ``is_directory``,
        ``not_regular_file``, ``too_large``, ``unreadable``, ``not_dicom``, ``corrupt_header``, ``no_pixel_data``,
        ``bad_header_value``, ``unsupported_transfer_syntax``, ``missing_decoder``,
        ``truncated``, ``bad_pixel_module``, ``decode_failed``,
        ``unsupported_photometric``, ``unusable_shape``, ``non_finite``,
        ``unexpected`` (an error medaudit did not anticipate; please report it).
    path : str or None, optional
        The file the problem is about.
    """

    def __init__(self, message: str, *, code: str = "unknown", path: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.path = path


@dataclass(frozen=True, eq=False)
class DicomImage:
    """One decoded DICOM frame with its metadata.

    Attributes
    ----------
    pixels : numpy.ndarray
        ``float32``, shape ``(H, W)`` for grayscale or ``(H, W, 3)`` for RGB,
        finite, in ``[0, 1]``, higher = brighter as displayed (MONOCHROME1 is
        already inverted). Shape ``(0, 0)`` when only the header was read.
    meta : dict[str, object]
        Non-identifying acquisition metadata, keys :data:`META_KEYS`, values
        JSON-serialisable scalars (``str``, ``int``, ``float`` or ``None``).
    identifiers : dict[str, str | None]
        Identifying values, raw, for the caller to pseudonymise; keys
        :data:`IDENTIFIER_KEYS`.
    """

    pixels: np.ndarray
    meta: dict[str, object]
    identifiers: dict[str, str | None]


# ------------------------------------------------------------------------ public API
def read_dicom(
    path: str | os.PathLike[str],
    *,
    frame_policy: FRAME_POLICY = "middle",
    header_only: bool = False,
    max_image_mib: float = DEFAULT_MAX_IMAGE_MIB,
) -> DicomImage:
    """Read a DICOM file into a display-ready image, its metadata and identifiers.

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM file (Part 10, or a bare dataset without preamble).
    frame_policy : {"middle", "first"}, default "middle"
        Frame used for a multi-frame object: index ``n // 2`` or 0.
    header_only : bool, default False
        Read the header only (``stop_before_pixels``); ``pixels`` is then an
        empty ``(0, 0)`` array and no pixel-level check is made, and
        ``meta['windowing']`` is what a full read would apply.
    max_image_mib : float, default :data:`ingest.limits.DEFAULT_MAX_IMAGE_MIB`
        A frame whose decoded size (see :mod:`ingest.limits`) exceeds this is
        refused before decoding (code ``"too_large"``).

    Returns
    -------
    DicomImage
        ``pixels`` float32 ``(H, W)`` or ``(H, W, 3)`` in ``[0, 1]``; ``meta``
        with keys :data:`META_KEYS`; ``identifiers`` with keys
        :data:`IDENTIFIER_KEYS`.

    Raises
    ------
    DicomReadError
        For any problem with the file (missing, not DICOM, no pixel data,
        truncated, undecodable, unusable shape, non-finite values); the message
        is one line.
    ValueError
        If `frame_policy` is not one of :data:`FRAME_POLICIES`.
    TypeError
        If `path` is not a str or os.PathLike.
    """
    if frame_policy not in FRAME_POLICIES:
        raise ValueError(
            f"frame_policy must be one of {list(FRAME_POLICIES)}; got {frame_policy!r}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    spath = os.fspath(path)
    try:
        return _read(spath, frame_policy=frame_policy, header_only=header_only,
                     max_image_mib=max_image_mib)
    except DicomReadError:
        raise
    except Exception as exc:  # last-resort net: one bad file never sinks a run
        raise _fail(_MSG_UNEXPECTED, "unexpected", spath, error=_describe(exc)) from exc


def _read(spath: str, *, frame_policy: FRAME_POLICY, header_only: bool,
          max_image_mib: float = DEFAULT_MAX_IMAGE_MIB) -> DicomImage:
    """Body of :func:`read_dicom` once the arguments are validated."""
    ds = _read_dataset(spath, header_only=header_only)
    declared_ts = _declared_transfer_syntax(ds)
    n_frames = _number_of_frames(ds, spath)
    frame = n_frames // 2 if frame_policy == "middle" else 0
    view = _frame_view(ds, frame)
    identifiers = _identifiers(ds)
    meta = _header_meta(ds, declared_ts, view)
    meta.update(
        number_of_frames=n_frames,
        frame_used=frame,
        frame_policy=frame_policy,
        windowing=_planned_windowing(ds, view),
    )

    if header_only:
        return DicomImage(np.empty((0, 0), dtype=np.float32), meta, identifiers)

    if not any(kw in ds for kw in _PIXEL_KEYWORDS):
        if len(ds) == 0:
            # pydicom returns an empty dataset when the file ends inside an
            # undefined-length element (e.g. encapsulated PixelData).
            raise _fail(_MSG_EMPTY_DATASET, "truncated", spath)
        rows, columns = _get_int(ds, "Rows"), _get_int(ds, "Columns")
        if rows is not None and columns is not None:
            # An Image Pixel module without pixels: pydicom drops a PixelData element
            # cut off by the end of the file, so this is most often truncation.
            raise _fail(_MSG_PIXEL_DATA_CUT_OFF, "truncated", spath, rows=rows, columns=columns)
        raise _fail(_MSG_NO_PIXEL_DATA, "no_pixel_data", spath, sop_class=_sop_class_name(ds))
    _check_header_shape(ds, spath)
    too_large = decoded_size_problem(_get_int(ds, "Rows") or 0, _get_int(ds, "Columns") or 0,
                                     _get_int(ds, "SamplesPerPixel") or 1,
                                     limit_mib=max_image_mib)
    if too_large:
        raise _fail(_MSG_TOO_LARGE, "too_large", spath, detail=too_large)
    if declared_ts is None:
        _infer_transfer_syntax(ds)

    arr, photometric = _decode_frame(ds, frame, spath)
    pixels, windowing = _to_display(arr, photometric, ds, view, spath)
    meta["windowing"] = windowing
    return DicomImage(pixels, meta, identifiers)


def read_dicom_header(path: str | os.PathLike[str]) -> DicomImage:
    """Read only the header of a DICOM file (fast: pixel data are never read).

    Same as ``read_dicom(path, header_only=True)``; meant for joining labels to
    files. ``frame_used`` follows the default ``"middle"`` policy.

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM file.

    Returns
    -------
    DicomImage
        ``pixels`` is ``np.empty((0, 0), float32)``; ``meta`` and
        ``identifiers`` as in :func:`read_dicom`.

    Raises
    ------
    DicomReadError
        If the file is missing, not DICOM, or its header cannot be parsed.
    """
    return read_dicom(path, header_only=True)


# ------------------------------------------------------------------------- reading
def _one_line(text: str) -> str:
    """Collapse all whitespace (newlines included) and cap the length."""
    flat = " ".join(str(text).split())
    if len(flat) > _MAX_DETAIL_CHARS:
        flat = flat[: _MAX_DETAIL_CHARS - 3].rstrip() + "..."
    return flat


def _describe(exc: BaseException) -> str:
    """``ClassName: message`` on one line."""
    detail = _one_line(str(exc))
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _fail(template: str, code: str, path: str, **fields: object) -> DicomReadError:
    """Fill a one-line message template (details are already one line, the path a repr)."""
    fields = {k: str(v).rstrip(" ;,.") if isinstance(v, str) else v for k, v in fields.items()}
    message = template.format(path=path, **fields).replace("\n", " ").replace("\r", " ")
    return DicomReadError(message, code=code, path=path)


def _read_dataset(path: str, *, header_only: bool) -> Dataset:
    """``dcmread`` with a guarded ``force=True`` retry for preamble-less files."""
    problem = regular_file_problem(path)
    if problem is not None:
        if problem.startswith(("no such", "is a broken")):
            raise _fail(_MSG_NOT_FOUND, "not_found", path)
        if problem == "is a directory":
            raise _fail(_MSG_IS_DIRECTORY, "is_directory", path)
        raise _fail(_MSG_NOT_REGULAR, "not_regular_file", path, problem=problem)
    try:
        return pydicom.dcmread(path, force=False, stop_before_pixels=header_only)
    except InvalidDicomError as exc:
        first_error = exc
    except FileNotFoundError:
        raise _fail(_MSG_NOT_FOUND, "not_found", path) from None
    except OSError as exc:
        raise _fail(_MSG_UNREADABLE, "unreadable", path, error=_describe(exc)) from exc
    except Exception as exc:  # pydicom raises many types on malformed files
        raise _fail(_MSG_CORRUPT_HEADER, "corrupt_header", path, error=_describe(exc)) from exc

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=header_only)
        looks_like_dicom = "SOPClassUID" in ds or any(kw in ds for kw in _PIXEL_KEYWORDS)
        if not looks_like_dicom and header_only:
            # stop_before_pixels hides PixelData; look once more, fully.
            full = pydicom.dcmread(path, force=True)
            looks_like_dicom = any(kw in full for kw in _PIXEL_KEYWORDS)
    except Exception as exc:
        error = f"a file pydicom cannot parse even with force=True ({_describe(exc)})"
        raise _fail(_MSG_NOT_DICOM, "not_dicom", path, error=error) from first_error
    if not looks_like_dicom:
        raise _fail(_MSG_NOT_DICOM, "not_dicom", path, error=_NOT_DICOM_NO_ELEMENTS)
    return ds


def _declared_transfer_syntax(ds: Dataset) -> UID | None:
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is None:
        return None
    try:
        ts = file_meta.get("TransferSyntaxUID")
    except Exception:
        return None
    return UID(str(ts)) if ts else None


def _infer_transfer_syntax(ds: Dataset) -> None:
    """Set a missing Transfer Syntax UID from the encoding the dataset was read with."""
    is_implicit, is_little = ds.original_encoding
    if is_implicit:
        ts = ImplicitVRLittleEndian
    elif is_little is False:
        ts = ExplicitVRBigEndian
    else:
        ts = ExplicitVRLittleEndian
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts


def _number_of_frames(ds: Dataset, path: str) -> int:
    if "NumberOfFrames" not in ds:
        return 1
    try:
        raw = ds["NumberOfFrames"].value
    except Exception as exc:
        raise _fail(
            _MSG_BAD_NUMBER_OF_FRAMES, "bad_header_value", path, value=_describe(exc)
        ) from exc
    if raw is None or raw == "":
        return 1
    try:
        n = int(str(raw).strip())
    except ValueError:
        raise _fail(_MSG_BAD_NUMBER_OF_FRAMES, "bad_header_value", path, value=str(raw)) from None
    if n < 0:
        raise _fail(_MSG_BAD_NUMBER_OF_FRAMES, "bad_header_value", path, value=str(raw))
    return max(n, 1)  # 0 is read as 1, as pydicom does


def _check_header_shape(ds: Dataset, path: str) -> None:
    rows = _get_int(ds, "Rows")
    cols = _get_int(ds, "Columns")
    if rows is not None and cols is not None and min(rows, cols) < _MIN_SIDE:
        raise _fail(_MSG_UNUSABLE_SHAPE, "unusable_shape", path, shape=(rows, cols))


# ------------------------------------------------------------------------ header
def _value(ds: Dataset, keyword: str) -> object:
    """Element value or None; never raises on a malformed element."""
    try:
        if keyword not in ds:
            return None
        return ds[keyword].value
    except Exception:
        return None


def _first(value: object) -> object:
    if isinstance(value, (list, tuple, MultiValue)):
        return value[0] if len(value) else None
    return value


def _get_str(ds: Dataset, keyword: str) -> str | None:
    value = _first(_value(ds, keyword))
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _to_float(value: object) -> float | None:
    value = _first(value)
    if value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _get_float(ds: Dataset, keyword: str) -> float | None:
    return _to_float(_value(ds, keyword))


def _get_int(ds: Dataset, keyword: str) -> int | None:
    number = _get_float(ds, keyword)
    if number is None or not number.is_integer():
        return None
    return int(number)


def _parse_age(text: str | None) -> float | None:
    """PatientAge ``nnnD|W|M|Y`` to years (never derived from the birth date)."""
    if text is None:
        return None
    match = _AGE_PATTERN.match(text)
    if match is None:
        return None
    return int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2).upper()]


def _functional_group_item(ds: Dataset, sequence: str, frame: int | None) -> Dataset | None:
    """First item of a shared (``frame=None``) or per-frame functional group macro."""
    try:
        if frame is None:
            groups = ds.get("SharedFunctionalGroupsSequence")
            group = groups[0] if groups else None
        else:
            groups = ds.get("PerFrameFunctionalGroupsSequence")
            group = groups[frame] if groups and frame < len(groups) else None
        if group is None:
            return None
        macro = group.get(sequence)
        return macro[0] if macro else None
    except Exception:
        return None


def _pixel_spacing(ds: Dataset) -> float | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = _get_float(ds, keyword)
        if spacing is not None:
            return spacing
    item = _functional_group_item(ds, "PixelMeasuresSequence", None)
    if item is None:
        item = _functional_group_item(ds, "PixelMeasuresSequence", 0)
    return _get_float(item, "PixelSpacing") if item is not None else None


def _sop_class_name(ds: Dataset) -> str:
    uid = _get_str(ds, "SOPClassUID")
    if uid is None and getattr(ds, "file_meta", None) is not None:
        uid = _get_str(ds.file_meta, "MediaStorageSOPClassUID")
    return UID(uid).name if uid else "not given"


def _header_meta(ds: Dataset, declared_ts: UID | None, view: Dataset) -> dict[str, object]:
    """Non-identifying metadata (see :data:`META_KEYS`); no names, IDs, UIDs or dates."""
    manufacturer = _get_str(ds, "Manufacturer")
    model = _get_str(ds, "ManufacturerModelName")
    scanner = " ".join(p for p in (manufacturer, model) if p).strip() or None
    sex = (_get_str(ds, "PatientSex") or "").upper()
    body_part = _get_str(ds, "BodyPartExamined")
    photometric = _get_str(ds, "PhotometricInterpretation")
    meta: dict[str, object] = dict.fromkeys(META_KEYS)
    meta.update(
        modality=_get_str(ds, "Modality"),
        sex=sex if sex in ("F", "M", "O") else None,
        age=_parse_age(_get_str(ds, "PatientAge")),
        view=_get_str(ds, "ViewPosition") or body_part,
        body_part=body_part,
        scanner=scanner,
        manufacturer=manufacturer,
        photometric_interpretation=photometric.upper() if photometric else None,
        bits_stored=_get_int(ds, "BitsStored"),
        bits_allocated=_get_int(ds, "BitsAllocated"),
        pixel_representation=_get_int(ds, "PixelRepresentation"),
        transfer_syntax=declared_ts.name if declared_ts else None,
        transfer_syntax_uid=str(declared_ts) if declared_ts else None,
        rows=_get_int(ds, "Rows"),
        columns=_get_int(ds, "Columns"),
        pixel_spacing_mm=_pixel_spacing(ds),
        samples_per_pixel=_get_int(ds, "SamplesPerPixel"),
        rescale_slope=_get_float(view, "RescaleSlope"),
        rescale_intercept=_get_float(view, "RescaleIntercept"),
    )
    return meta


def _identifiers(ds: Dataset) -> dict[str, str | None]:
    return {key: _get_str(ds, keyword) for key, keyword in IDENTIFIER_KEYS.items()}


# ------------------------------------------------------------------ per-frame view
def _copy_element(target: Dataset, source: Dataset, keyword: str) -> None:
    try:
        if keyword in source:
            elem = source[keyword]
            target.add(DataElement(elem.tag, elem.VR, elem.value))
    except Exception:
        pass  # a malformed element is treated as absent


def _frame_view(ds: Dataset, frame: int) -> Dataset:
    """A small dataset with the grayscale-transform elements that apply to `frame`.

    Top-level values, overridden by the shared functional groups, overridden by
    the frame's own functional groups (enhanced multi-frame objects). Rescale
    Slope / Intercept are kept only as a finite pair (a missing half takes its
    default). The source dataset is never modified.
    """
    view = Dataset()
    if getattr(ds, "file_meta", None) is not None:
        view.file_meta = ds.file_meta  # endianness of OW LUT data
    for keyword in _VIEW_KEYWORDS:
        _copy_element(view, ds, keyword)
    slope = _get_float(ds, "RescaleSlope")
    intercept = _get_float(ds, "RescaleIntercept")
    for group_frame in (None, frame):
        for sequence, keywords in _FUNCTIONAL_GROUP_MACROS.items():
            item = _functional_group_item(ds, sequence, group_frame)
            if item is None:
                continue
            if sequence == "PixelValueTransformationSequence":
                slope = _get_float(item, "RescaleSlope") if "RescaleSlope" in item else slope
                if "RescaleIntercept" in item:
                    intercept = _get_float(item, "RescaleIntercept")
                continue
            for keyword in keywords:
                _copy_element(view, item, keyword)
    if slope is not None or intercept is not None:
        view.RescaleSlope = DSfloat(1.0 if slope is None else slope, auto_format=True)
        view.RescaleIntercept = DSfloat(0.0 if intercept is None else intercept, auto_format=True)
    return view


def _window_is_usable(view: Dataset) -> bool:
    center = _get_float(view, "WindowCenter")
    width = _get_float(view, "WindowWidth")
    if center is None or width is None:
        return False
    function = (_get_str(view, "VOILUTFunction") or "LINEAR").upper()
    if function == "LINEAR":
        return width >= 1
    return function in ("LINEAR_EXACT", "SIGMOID") and width > 0


def _voi_lut_is_usable(view: Dataset) -> bool:
    try:
        sequence = view.get("VOILUTSequence")
        if not sequence:
            return False
        item = sequence[0]
        descriptor = item.LUTDescriptor
        return (
            "LUTData" in item
            and len(descriptor) == 3
            and (descriptor[2] == 8 or 10 <= descriptor[2] <= 16)
        )
    except Exception:
        return False


def _planned_windowing(ds: Dataset, view: Dataset) -> WINDOWING | None:
    photometric = (_get_str(ds, "PhotometricInterpretation") or "").upper()
    if photometric not in _MONOCHROME:
        return "bit_depth" if photometric else None
    if _voi_lut_is_usable(view):
        return "voi_lut"
    if _window_is_usable(view):
        return "window"
    return "minmax"


# ------------------------------------------------------------------------ decoding
def _decoder_packages(ts: UID) -> str:
    """Which packages to install for a transfer syntax."""
    if ts in JPEG2000TransferSyntaxes:
        return "pylibjpeg-openjpeg (or python-gdcm)"
    if ts in JPEGLSTransferSyntaxes:
        return "pylibjpeg-libjpeg (or python-gdcm, pyjpegls)"
    if ts in JPEGTransferSyntaxes:
        return "pylibjpeg-libjpeg (or python-gdcm, pillow)"
    if ts in RLETransferSyntaxes:
        return "pylibjpeg-rle (or python-gdcm)"
    return "python-gdcm"


def _decode_frame(ds: Dataset, frame: int, path: str) -> tuple[np.ndarray, str]:
    """Decode one frame; return it and its photometric interpretation after decoding.

    Returns
    -------
    arr : numpy.ndarray
        ``(rows, columns)`` or ``(rows, columns, samples)``.
    photometric : str
        E.g. ``"RGB"`` once pydicom converted YBR data while decoding.
    """
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise _fail(
            _MSG_UNSUPPORTED_TRANSFER_SYNTAX,
            "unsupported_transfer_syntax",
            path,
            ts_name=ts.name,
            ts_uid=str(ts),
        ) from None
    if not decoder.is_available:
        raise _fail(
            _MSG_MISSING_DECODER,
            "missing_decoder",
            path,
            ts_name=ts.name,
            missing="; ".join(decoder.missing_dependencies) or "no plugin",
            packages=_decoder_packages(ts),
        )
    try:
        arr, properties = decoder.as_array(ds, index=frame, validate=True, **as_pixel_options(ds))
    except (ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
        text = str(exc)
        if "less than expected" in text or "truncated" in text.lower():
            raise _fail(_MSG_TRUNCATED, "truncated", path, error=_describe(exc)) from exc
        if ts.is_compressed and not isinstance(exc, AttributeError):
            raise _fail(
                _MSG_DECODE_FAILED,
                "decode_failed",
                path,
                ts_name=ts.name,
                error=_describe(exc),
                packages=_decoder_packages(ts),
            ) from exc
        raise _fail(_MSG_BAD_PIXEL_MODULE, "bad_pixel_module", path, error=_describe(exc)) from exc
    except Exception as exc:  # plugin failures surface as RuntimeError and others
        raise _fail(
            _MSG_DECODE_FAILED,
            "decode_failed",
            path,
            ts_name=ts.name,
            error=_describe(exc),
            packages=_decoder_packages(ts),
        ) from exc
    photometric = properties.get("photometric_interpretation") or _get_str(
        ds, "PhotometricInterpretation"
    )
    photometric = getattr(photometric, "value", photometric)  # str-enum from pydicom
    return arr, str(photometric or "").strip().upper()


# --------------------------------------------------------------------- intensities
def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``[low, high]`` linearly to ``[0, 1]`` (either order); constant -> zeros."""
    span = high - low
    if not math.isfinite(span) or span == 0:
        return np.zeros(values.shape, dtype=np.float64)
    return (values.astype(np.float64) - low) / span


def _grayscale(arr: np.ndarray, view: Dataset, path: str) -> tuple[np.ndarray, WINDOWING]:
    """Modality LUT, then VOI LUT / first window / min-max, scaled to ``[0, 1]``."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            values = apply_modality_lut(arr, view)
    except Exception as exc:
        raise _fail(_MSG_BAD_PIXEL_MODULE, "bad_pixel_module", path, error=_describe(exc)) from exc
    values = np.asarray(values)
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise _fail(_MSG_NON_FINITE, "non_finite", path, count=bad)

    with np.errstate(over="ignore", invalid="ignore"):
        if _voi_lut_is_usable(view):
            try:
                descriptor = view.VOILUTSequence[0].LUTDescriptor
                entries, first = int(descriptor[0]) or 2**16, int(descriptor[1])
                # Output range = range of the LUT entries over its whole input domain.
                lut_values = apply_voi(np.arange(first, first + entries), view, 0)
                inputs = np.clip(np.rint(values), first, first + entries - 1).astype(np.int64)
                out = _scale(
                    apply_voi(inputs, view, 0), float(lut_values.min()), float(lut_values.max())
                )
                return out, "voi_lut"
            except Exception:
                pass  # malformed LUT: fall through to the window or min-max
        if _window_is_usable(view):
            try:
                windowed = apply_windowing(values, view, 0)
                low, high = apply_windowing(np.array([-np.inf, np.inf]), view, 0)
                return _scale(windowed, float(low), float(high)), "window"
            except Exception:
                pass  # e.g. no Bits Stored for float pixel data: use min-max
        return _scale(values, float(values.min()), float(values.max())), "minmax"


def _colour(arr: np.ndarray, photometric: str, ds: Dataset, path: str) -> np.ndarray | None:
    """RGB / YBR_FULL* / PALETTE COLOR to RGB in ``[0, 1]``; None if not colour."""
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        try:
            rgb = apply_color_lut(arr, ds)
        except Exception as exc:
            raise _fail(
                _MSG_BAD_PIXEL_MODULE, "bad_pixel_module", path, error=_describe(exc)
            ) from exc
        depth = 8 if rgb.dtype.itemsize == 1 else 16
        return rgb.astype(np.float64) / (2**depth - 1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        return None
    if photometric in _YBR_TO_CONVERT:
        arr = convert_color_space(arr, photometric, "RGB")
    elif photometric != "RGB":
        return None
    bits = _get_int(ds, "BitsStored") or arr.dtype.itemsize * 8
    return arr.astype(np.float64) / (2**bits - 1)


def _to_display(
    arr: np.ndarray, photometric: str, ds: Dataset, view: Dataset, path: str
) -> tuple[np.ndarray, WINDOWING]:
    """Decoded frame to float32 ``[0, 1]`` display values (see module docstring)."""
    if arr.ndim < 2 or min(arr.shape[:2]) < _MIN_SIDE:
        raise _fail(_MSG_UNUSABLE_SHAPE, "unusable_shape", path, shape=tuple(arr.shape[:2]))
    if photometric in _MONOCHROME and arr.ndim == 2:
        out, windowing = _grayscale(arr, view, path)
        if photometric == "MONOCHROME1":
            out = 1.0 - out
    else:
        colour = _colour(arr, photometric, ds, path)
        if colour is None:
            raise _fail(
                _MSG_UNSUPPORTED_PHOTOMETRIC,
                "unsupported_photometric",
                path,
                value=photometric,
                shape=tuple(arr.shape),
            )
        out, windowing = colour, "bit_depth"
    bad = int(out.size - np.count_nonzero(np.isfinite(out)))
    if bad:
        raise _fail(_MSG_NON_FINITE, "non_finite", path, count=bad)
    pixels = np.clip(out, 0.0, 1.0).astype(np.float32)
    return np.ascontiguousarray(pixels), windowing
