"""Tests for ``ingest.dicom``: pixel correctness, refusals, metadata privacy.

Real files come from pydicom's bundled test data (never downloaded here); planted
problems come from tiny synthetic datasets written to ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
)

from ingest import dicom as dicom_module
from ingest.dicom import (
    FRAME_POLICIES,
    IDENTIFIER_KEYS,
    META_KEYS,
    DicomImage,
    DicomReadError,
    read_dicom,
    read_dicom_header,
)
from tests.dicom_factory import new_part10_dataset

_MAX_BUNDLED_BYTES = 20 * 1024 * 1024  # bigger (downloaded) files would slow the suite
_BUNDLED_ROOT = Path(pydicom.data.__file__).parent / "test_files"


# ----------------------------------------------------------------------- helpers
def _bundled(name: str) -> str:
    """Path of a bundled pydicom test file; skip (never download) if absent."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name!r} is not bundled with this pydicom")
    return str(path)


def _write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    sop_class: str = SecondaryCaptureImageStorage,
    **attrs: object,
) -> Path:
    """Write a small Explicit VR Little Endian Part-10 file.

    `pixels` is ``(H, W)``, ``(F, H, W)`` (multi-frame) or ``(H, W, 3)`` (RGB,
    uint8); ``None`` writes a dataset without PixelData. Extra keyword
    arguments become DICOM attributes.
    """
    ds = new_part10_dataset(sop_class=sop_class)
    if pixels is not None:
        is_rgb = photometric == "RGB"
        bits_allocated = pixels.dtype.itemsize * 8
        ds.SamplesPerPixel = 3 if is_rgb else 1
        if is_rgb:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        frames = pixels.shape[0] if (pixels.ndim == 3 and not is_rgb) else 1
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.Rows, ds.Columns = pixels.shape[:2] if is_rgb else pixels.shape[-2:]
        ds.BitsAllocated = bits_allocated
        ds.BitsStored = bits_stored or bits_allocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _ramp(rows: int = 16, columns: int = 64, stop: int = 1000) -> np.ndarray:
    """uint16 ramp of values 0..stop-1 (repeating), shape (rows, columns)."""
    return (np.arange(rows * columns) % stop).astype(np.uint16).reshape(rows, columns)


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 'LINEAR' window scaled to [0, 1]."""
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _assert_valid_image(image: DicomImage) -> None:
    pixels = image.pixels
    assert isinstance(image, DicomImage)
    assert pixels.dtype == np.float32
    assert pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] == 3)
    assert min(pixels.shape[:2]) >= 2
    assert np.isfinite(pixels).all()
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert tuple(image.meta) == META_KEYS
    assert set(image.identifiers) == set(IDENTIFIER_KEYS)
    json.dumps(image.meta)  # JSON-serialisable scalars only
    for value in image.meta.values():
        assert value is None or type(value) in (str, int, float)


def _assert_one_line_refusal(err: DicomReadError) -> None:
    message = str(err)
    assert message and "\n" not in message and "\r" not in message
    assert err.code != "unknown"


# ------------------------------------------------- every bundled file: contract
def _bundled_files() -> list[str]:
    return sorted(str(p) for p in get_testdata_files())


@pytest.mark.parametrize(
    "path",
    _bundled_files(),
    ids=lambda p: os.path.relpath(p, _BUNDLED_ROOT),
)
def test_every_bundled_file_is_an_image_or_a_one_line_refusal(path: str) -> None:
    if os.path.isfile(path) and os.path.getsize(path) > _MAX_BUNDLED_BYTES:
        pytest.skip("file larger than 20 MB: kept out to bound the test runtime")
    try:
        image = read_dicom(path)
    except DicomReadError as err:
        _assert_one_line_refusal(err)
    else:
        _assert_valid_image(image)
    try:
        header = read_dicom_header(path)
    except DicomReadError as err:
        _assert_one_line_refusal(err)
    else:
        assert header.pixels.shape == (0, 0) and header.pixels.dtype == np.float32
        json.dumps(header.meta)


@pytest.mark.parametrize(
    ("name", "code", "fragments"),
    [
        ("rtplan.dcm", "no_pixel_data", ["(7FE0,0010) 'PixelData'", "RT Plan Storage"]),
        ("test-SR.dcm", "no_pixel_data", ["(7FE0,0010) 'PixelData'", "Comprehensive SR"]),
        ("MR_truncated.dcm", "truncated", ["(7FE0,0010) 'PixelData'", "truncated"]),
        ("badVR.dcm", "bad_header_value", ["(0028,0008) 'NumberOfFrames'", "'1A'"]),
        ("README.txt", "not_dicom", ["not a DICOM file"]),
        ("nested_priv_SQ.dcm", "bad_pixel_module", ["(0028,0100) 'Bits Allocated'"]),
    ],
)
def test_known_bad_bundled_files_are_refused_with_a_useful_reason(
    name: str, code: str, fragments: list[str]
) -> None:
    path = _bundled(name)
    with pytest.raises(DicomReadError) as info:
        read_dicom(path)
    _assert_one_line_refusal(info.value)
    assert info.value.code == code
    assert info.value.path == path
    assert repr(path) in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_dicomdir_is_refused_as_non_image() -> None:
    path = get_testdata_file("DICOMDIR", download=False)
    if path is None:
        pytest.skip("bundled DICOMDIR missing")
    with pytest.raises(DicomReadError, match="Media Storage Directory Storage") as info:
        read_dicom(path)
    assert info.value.code == "no_pixel_data"


def test_undecodable_jpeg_names_the_transfer_syntax_and_a_package() -> None:
    path = _bundled("JPEG-lossy.dcm")  # decodes only with GDCM
    try:
        read_dicom(path)
    except DicomReadError as err:
        assert err.code == "decode_failed"
        assert "JPEG Extended" in str(err) and "python-gdcm" in str(err)
    else:  # pragma: no cover - python-gdcm installed
        pass


# ------------------------------------------------------------ grayscale values
def test_ct_small_applies_rescale_and_records_it() -> None:
    image = read_dicom(_bundled("CT_small.dcm"))
    _assert_valid_image(image)
    assert image.meta["modality"] == "CT"
    assert image.meta["rescale_slope"] == 1.0
    assert image.meta["rescale_intercept"] == -1024.0
    assert image.meta["windowing"] == "minmax"  # no window in this file
    assert image.meta["bits_stored"] == 16 and image.meta["pixel_representation"] == 1
    assert image.meta["transfer_syntax"] == "Explicit VR Little Endian"
    assert image.meta["pixel_spacing_mm"] == pytest.approx(0.661468, rel=1e-5)
    assert image.pixels.shape == (128, 128)
    raw = pydicom.dcmread(_bundled("CT_small.dcm")).pixel_array.astype(np.float64)
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)


def test_rescale_is_applied_before_the_window_in_hounsfield_units() -> None:
    path = _bundled("693_J2KI.dcm")  # JPEG 2000, intercept -1024, window 40/100
    image = read_dicom(path)
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)
    expected = _linear_window(raw - 1024.0, center=40.0, width=100.0)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta["windowing"] == "window"
    assert image.meta["transfer_syntax"] == "JPEG 2000 Image Compression"


def test_mr_small_uses_its_window() -> None:
    path = _bundled("MR_small.dcm")
    image = read_dicom(path)
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)
    np.testing.assert_allclose(image.pixels, _linear_window(raw, 600.0, 1600.0), atol=1e-6)
    assert image.meta["windowing"] == "window"
    assert (image.meta["rows"], image.meta["columns"]) == (64, 64)
    assert image.meta["modality"] == "MR"


def test_first_of_several_windows_is_used(tmp_path: Path) -> None:
    stored = _ramp()
    path = _write_dicom(
        tmp_path / "w.dcm",
        stored,
        WindowCenter=[300, 700],
        WindowWidth=[200, 50],
        RescaleSlope=2,
        RescaleIntercept=-100,
    )
    image = read_dicom(path)
    expected = _linear_window(stored * 2.0 - 100.0, center=300.0, width=200.0)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta["windowing"] == "window"
    assert image.meta["rescale_slope"] == 2.0 and image.meta["rescale_intercept"] == -100.0


def test_invalid_window_falls_back_to_minmax(tmp_path: Path) -> None:
    stored = _ramp()
    path = _write_dicom(tmp_path / "w0.dcm", stored, WindowCenter=300, WindowWidth=0)
    image = read_dicom(path)
    assert image.meta["windowing"] == "minmax"
    np.testing.assert_allclose(image.pixels, stored / stored.max(), atol=1e-6)


def test_voi_lut_sequence_is_applied_and_scaled_by_the_lut_range(tmp_path: Path) -> None:
    stored = _ramp(stop=256)
    lut = np.sqrt(np.arange(256) / 255.0) * 4000 + 50  # non-linear, 50..4050, 12 bit
    lut = lut.astype(np.uint16)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [256, 0, 12])
    item.add_new("LUTData", "OW", lut.astype("<u2").tobytes())
    path = _write_dicom(
        tmp_path / "voi.dcm",
        stored,
        VOILUTSequence=Sequence([item]),
        WindowCenter=10,
        WindowWidth=20,  # VOI LUT takes precedence over the window
    )
    image = read_dicom(path)
    expected = (lut[stored].astype(np.float64) - lut.min()) / (lut.max() - lut.min())
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta["windowing"] == "voi_lut"


@pytest.mark.parametrize("window", [None, (400, 300)])
def test_monochrome1_is_the_inverse_of_monochrome2(tmp_path: Path, window) -> None:
    stored = _ramp()
    extra = {} if window is None else {"WindowCenter": window[0], "WindowWidth": window[1]}
    mono2 = read_dicom(_write_dicom(tmp_path / "m2.dcm", stored, **extra)).pixels
    mono1 = read_dicom(
        _write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", **extra)
    ).pixels
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    darkest, brightest = stored.argmin(), stored.argmax()
    assert mono2.flat[darkest] < mono2.flat[brightest]  # higher stored = brighter (MONO2)
    assert mono1.flat[darkest] > mono1.flat[brightest]  # and darker for MONOCHROME1


def test_bits_stored_and_sign_are_respected(tmp_path: Path) -> None:
    values = np.linspace(-2048, 2047, 16 * 64).astype(np.int16).reshape(16, 64)
    # 12-bit two's complement in the low bits, garbage in the 4 unused high bits
    stored = ((values.astype(np.int32) & 0x0FFF) | 0xA000).astype(np.uint16)
    path = _write_dicom(tmp_path / "s.dcm", stored, bits_stored=12, signed=True)
    image = read_dicom(path)
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta["bits_stored"] == 12 and image.meta["pixel_representation"] == 1


def test_constant_image_maps_to_zeros(tmp_path: Path) -> None:
    path = _write_dicom(tmp_path / "c.dcm", np.full((8, 8), 7, dtype=np.uint16))
    assert not read_dicom(path).pixels.any()


# -------------------------------------------- same image, different encodings
@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_lossless_encodings_of_mr_small_decode_identically(name: str) -> None:
    reference = read_dicom(_bundled("MR_small.dcm")).pixels
    np.testing.assert_allclose(read_dicom(_bundled(name)).pixels, reference, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "max_mean_abs_diff"),
    [
        ("SC_rgb_jpeg_gdcm.dcm", 1e-6),  # JPEG lossless, RGB
        ("SC_rgb_gdcm_KY.dcm", 1e-6),  # JPEG 2000
        ("SC_rgb_rle_16bit.dcm", 1e-6),  # same image at 16 bits
        ("SC_rgb_rle_32bit.dcm", 1e-6),  # and at 32 bits
        ("SC_rgb_jpeg_dcmtk.dcm", 0.01),  # JPEG baseline, YBR_FULL
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", 0.03),  # JPEG baseline, YBR_FULL_422
        ("SC_ybr_full_422_uncompressed.dcm", 0.01),  # native YBR_FULL_422
        ("SC_rgb_jls_lossy_line.dcm", 0.01),  # JPEG-LS near-lossless
    ],
)
def test_colour_encodings_of_the_same_image_agree(name: str, max_mean_abs_diff: float) -> None:
    reference = read_dicom(_bundled("SC_rgb_rle.dcm")).pixels
    image = read_dicom(_bundled(name))
    assert image.pixels.shape == reference.shape == (100, 100, 3)
    assert np.abs(image.pixels - reference).mean() <= max_mean_abs_diff
    assert image.meta["windowing"] == "bit_depth"


def test_rgb_channels_are_in_rgb_order() -> None:
    pixels = read_dicom(_bundled("SC_rgb_rle.dcm")).pixels
    # SC_rgb has horizontal bands: red, pink, green, light green, blue, ..., white
    np.testing.assert_allclose(pixels[5, 50], [1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(pixels[25, 50], [0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(pixels[45, 50], [0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(pixels[95, 50], [1.0, 1.0, 1.0], atol=1e-6)


def test_palette_colour_is_expanded_to_rgb() -> None:
    path = _bundled("examples_palette.dcm")
    image = read_dicom(path)
    ds = pydicom.dcmread(path)
    expected = apply_color_lut(ds.pixel_array, ds).astype(np.float64) / 65535  # 16-bit LUT
    assert image.pixels.shape == (*ds.pixel_array.shape, 3)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta["photometric_interpretation"] == "PALETTE COLOR"


# ------------------------------------------------------------------ multi-frame
def test_multi_frame_policy_picks_the_middle_or_first_frame(tmp_path: Path) -> None:
    frames = np.zeros((5, 8, 8), dtype=np.uint16)
    for index in range(5):
        frames[index, index, :] = 1000  # frame k has a bright row k
    path = _write_dicom(tmp_path / "mf.dcm", frames)
    middle = read_dicom(path)
    first = read_dicom(path, frame_policy="first")
    assert middle.pixels.shape == (8, 8)
    assert middle.pixels[2].min() == 1.0 and middle.pixels.sum() == 8
    assert first.pixels[0].min() == 1.0 and first.pixels.sum() == 8
    assert (middle.meta["number_of_frames"], middle.meta["frame_used"]) == (5, 2)
    assert (first.meta["frame_used"], first.meta["frame_policy"]) == (0, "first")
    assert middle.meta["frame_policy"] == "middle"


def test_bundled_multi_frame_files_use_the_policy() -> None:
    rtdose = _bundled("rtdose.dcm")
    image = read_dicom(rtdose)
    frame = pydicom.dcmread(rtdose).pixel_array[7].astype(np.float64)
    np.testing.assert_allclose(
        image.pixels, (frame - frame.min()) / (frame.max() - frame.min()), atol=1e-6
    )
    assert (image.meta["number_of_frames"], image.meta["frame_used"]) == (15, 7)

    two = _bundled("SC_rgb_rle_2frame.dcm")
    single = read_dicom(_bundled("SC_rgb_rle.dcm")).pixels
    np.testing.assert_allclose(read_dicom(two, frame_policy="first").pixels, single, atol=1e-6)
    second = pydicom.dcmread(two).pixel_array[1] / 255.0
    np.testing.assert_allclose(read_dicom(two).pixels, second, atol=1e-6)

    ybr = read_dicom(_bundled("examples_ybr_color.dcm"))  # 30 JPEG YBR_FULL_422 frames
    assert ybr.pixels.shape == (240, 320, 3)
    assert (ybr.meta["number_of_frames"], ybr.meta["frame_used"]) == (30, 15)


def test_enhanced_functional_groups_rescale_and_window_the_frame_used(tmp_path: Path) -> None:
    frames = np.stack([_ramp(8, 64, 64)] * 3)
    shared = Dataset()
    transform = Dataset()
    transform.RescaleSlope = 2
    transform.RescaleIntercept = 10
    transform.RescaleType = "US"
    shared.PixelValueTransformationSequence = Sequence([transform])
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.5]
    shared.PixelMeasuresSequence = Sequence([measures])
    per_frame = []
    for center in (20, 60, 100):
        window = Dataset()
        window.WindowCenter = center
        window.WindowWidth = 40
        group = Dataset()
        group.FrameVOILUTSequence = Sequence([window])
        per_frame.append(group)
    path = _write_dicom(
        tmp_path / "enh.dcm",
        frames,
        SharedFunctionalGroupsSequence=Sequence([shared]),
        PerFrameFunctionalGroupsSequence=Sequence(per_frame),
    )
    image = read_dicom(path)  # middle frame: index 1, window 60/40
    expected = _linear_window(frames[1] * 2.0 + 10.0, center=60.0, width=40.0)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta["rescale_slope"] == 2.0 and image.meta["rescale_intercept"] == 10.0
    assert image.meta["pixel_spacing_mm"] == 0.5
    assert image.meta["windowing"] == "window"


# --------------------------------------------------------------------- refusals
def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.dcm"
    with pytest.raises(DicomReadError, match="no file at path") as info:
        read_dicom(missing)
    assert info.value.code == "not_found" and str(missing) in str(info.value)


def test_directory_and_non_dicom_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DicomReadError) as info:
        read_dicom(tmp_path)
    assert info.value.code == "is_directory"
    text = tmp_path / "notes.dcm"
    text.write_text("not an image at all\n" * 20)
    with pytest.raises(DicomReadError, match="not a DICOM file") as info:
        read_dicom(text)
    assert info.value.code == "not_dicom"
    _assert_one_line_refusal(info.value)
    with pytest.raises(DicomReadError):
        read_dicom_header(text)


def test_truncated_native_file_is_refused(tmp_path: Path) -> None:
    path = _write_dicom(tmp_path / "full.dcm", _ramp(32, 32))
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DicomReadError, match="truncated") as info:
        read_dicom(cut)
    assert info.value.code == "truncated"
    assert "(7FE0,0010) 'PixelData'" in str(info.value) and str(cut) in str(info.value)
    _assert_one_line_refusal(info.value)
    assert read_dicom_header(cut).meta["rows"] == 32  # the header itself is intact


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_truncated_compressed_file_is_refused(tmp_path: Path, name: str) -> None:
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(Path(_bundled(name)).read_bytes()[:-300])
    with pytest.raises(DicomReadError, match="truncated") as info:
        read_dicom(cut)
    assert info.value.code == "truncated"


def test_non_image_dicom_is_refused(tmp_path: Path) -> None:
    path = _write_dicom(tmp_path / "sr.dcm", None, sop_class=BasicTextSRStorage)
    with pytest.raises(DicomReadError) as info:
        read_dicom(path)
    assert info.value.code == "no_pixel_data"
    assert "(7FE0,0010) 'PixelData'" in str(info.value)
    assert "Basic Text SR Storage" in str(info.value)


@pytest.mark.parametrize("shape", [(1, 1), (1, 8), (8, 1)])
def test_unusable_shape_is_refused(tmp_path: Path, shape: tuple[int, int]) -> None:
    path = _write_dicom(tmp_path / "tiny.dcm", np.ones(shape, dtype=np.uint16))
    with pytest.raises(
        DicomReadError, match=rf"image of unusable shape \({shape[0]}, {shape[1]}\)"
    ):
        read_dicom(path)


def test_non_finite_result_is_refused(tmp_path: Path) -> None:
    path = _write_dicom(tmp_path / "inf.dcm", _ramp(), RescaleSlope="1e308", RescaleIntercept=0)
    with pytest.raises(DicomReadError, match="NaN or infinite") as info:
        read_dicom(path)
    assert info.value.code == "non_finite"


def test_missing_decoder_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    class _UnavailableDecoder:
        is_available = False
        missing_dependencies = ("openjpeg - requires pylibjpeg-openjpeg",)

    monkeypatch.setattr(dicom_module, "get_decoder", lambda uid: _UnavailableDecoder())
    path = _bundled("MR_small_jp2klossless.dcm")
    with pytest.raises(DicomReadError) as info:
        read_dicom(path)
    assert info.value.code == "missing_decoder"
    assert "pylibjpeg-openjpeg" in str(info.value)
    assert JPEG2000Lossless.name in str(info.value)


def test_unsupported_transfer_syntax_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def _no_decoder(uid: str) -> None:
        raise NotImplementedError(uid)

    monkeypatch.setattr(dicom_module, "get_decoder", _no_decoder)
    with pytest.raises(DicomReadError, match=re.escape("(0002,0010) 'TransferSyntaxUID'")) as info:
        read_dicom(_bundled("MR_small.dcm"))
    assert info.value.code == "unsupported_transfer_syntax"


def test_decoder_crash_becomes_a_one_line_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    class _CrashingDecoder:
        is_available = True
        missing_dependencies = ()

        def as_array(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("plugin exploded\nwith a second line")

    monkeypatch.setattr(dicom_module, "get_decoder", lambda uid: _CrashingDecoder())
    with pytest.raises(DicomReadError, match="RuntimeError: plugin exploded") as info:
        read_dicom(_bundled("MR_small_RLE.dcm"))
    assert info.value.code == "decode_failed"
    _assert_one_line_refusal(info.value)


def test_unexpected_internal_error_still_becomes_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def _boom(*args: object, **kwargs: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(dicom_module, "_to_display", _boom)
    with pytest.raises(DicomReadError, match="KeyError") as info:
        read_dicom(_bundled("MR_small.dcm"))
    assert info.value.code == "unexpected"
    _assert_one_line_refusal(info.value)


def test_invalid_frame_policy_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="frame_policy") as info:
        read_dicom(_bundled("MR_small.dcm"), frame_policy="last")  # type: ignore[arg-type]
    assert not isinstance(info.value, DicomReadError)
    assert FRAME_POLICIES == ("middle", "first")


# ------------------------------------------------------------ metadata and PHI
_PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-12345",
    "PatientBirthDate": "19790101",
    "InstitutionName": "St Example Hospital",
    "AccessionNumber": "ACC-999",
    "StudyDate": "20240229",
    "ReferringPhysicianName": "Who^Doctor",
}


def test_meta_holds_no_identifiers_and_identifiers_hold_them(tmp_path: Path) -> None:
    path = _write_dicom(
        tmp_path / "phi.dcm",
        _ramp(),
        PatientSex="F",
        PatientAge="045Y",
        ViewPosition="PA",
        BodyPartExamined="CHEST",
        Manufacturer="Acme",
        ManufacturerModelName=" X1 ",
        ImagerPixelSpacing=[0.14, 0.14],
        **_PHI,
    )
    ds = pydicom.dcmread(path)
    image = read_dicom(path)
    dumped = json.dumps(image.meta)
    secrets = [*_PHI.values(), "Doe", "12345", ds.StudyInstanceUID, ds.SOPInstanceUID]
    secrets += [ds.SeriesInstanceUID, "2024", "1979"]
    for secret in secrets:
        assert secret not in dumped
    assert image.identifiers == {
        "patient_id": "PID-12345",
        "study_instance_uid": ds.StudyInstanceUID,
        "sop_instance_uid": ds.SOPInstanceUID,
        "series_instance_uid": ds.SeriesInstanceUID,
        "institution_name": "St Example Hospital",
        "accession_number": "ACC-999",
    }
    assert image.meta["sex"] == "F"
    assert image.meta["age"] == 45.0
    assert image.meta["view"] == "PA"
    assert image.meta["body_part"] == "CHEST"
    assert image.meta["scanner"] == "Acme X1"
    assert image.meta["manufacturer"] == "Acme"
    assert image.meta["pixel_spacing_mm"] == pytest.approx(0.14)
    assert read_dicom_header(path).meta == image.meta


@pytest.mark.parametrize(
    ("age", "years"),
    [
        ("045Y", 45.0),
        ("006M", 0.5),
        ("010W", 70 / 365.25),
        ("003D", 3 / 365.25),
        ("abc", None),
        (None, None),
    ],
)
def test_age_is_parsed_from_patient_age_only(tmp_path: Path, age: str | None, years) -> None:
    attrs = {"PatientBirthDate": "19790101", "PatientSex": "X"}
    if age is not None:
        attrs["PatientAge"] = age
    meta = read_dicom_header(_write_dicom(tmp_path / "a.dcm", _ramp(), **attrs)).meta
    assert meta["age"] == (pytest.approx(years) if years is not None else None)
    assert meta["sex"] is None  # 'X' is not a valid PatientSex


def test_view_falls_back_to_body_part_and_absent_values_are_none(tmp_path: Path) -> None:
    meta = read_dicom(_write_dicom(tmp_path / "v.dcm", _ramp(), BodyPartExamined="KNEE")).meta
    assert meta["view"] == "KNEE"
    assert meta["scanner"] is None and meta["manufacturer"] is None
    assert meta["age"] is None and meta["sex"] is None and meta["pixel_spacing_mm"] is None
    assert meta["rescale_slope"] is None and meta["rescale_intercept"] is None


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "CT_small.dcm", "examples_ybr_color.dcm", "examples_palette.dcm"]
)
def test_header_only_read_matches_the_full_read(name: str) -> None:
    path = _bundled(name)
    header = read_dicom_header(path)
    full = read_dicom(path)
    assert header.pixels.shape == (0, 0) and header.pixels.dtype == np.float32
    assert header.meta == full.meta
    assert header.identifiers == full.identifiers


def test_error_survives_pickling() -> None:
    err = DicomReadError("one line", code="truncated", path="a.dcm")
    clone = pickle.loads(pickle.dumps(err))
    assert (str(clone), clone.code, clone.path) == ("one line", "truncated", "a.dcm")
