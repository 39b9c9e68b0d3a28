"""DICOM writing: pydicom datasets of the images and the SR documents, and the broken files.

Every DICOM file is explicit VR little endian with preamble and file meta
information. Images are 12-bit grayscale (BitsStored 12 in 16-bit words) with
the site's photometric interpretation, rescale and window; the non-image files
are Basic Text SR documents. A truncated file is a complete image file cut
inside its pixel data; a not-DICOM file is random bytes with a ``.dcm`` name.
"""

from __future__ import annotations

import datetime as _dt
import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from ingest.demo._identifiers import StudyHeader
from ingest.demo._records import Patient, PlannedImage, age_on
from ingest.demo._sites import Site

__all__ = ["SOP_BASIC_TEXT_SR", "dicom_bytes", "garbage_bytes"]

SOP_BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
"""SOP Class UID of Basic Text SR Storage (the non-image files)."""

_FIELD_OF_VIEW_MM = 430.0
# Share of the pixel data cut from the end of a truncated file.
_TRUNCATED_SHARE = 0.6


def dicom_bytes(
    img: PlannedImage, pat: Patient, site: Site, header: StudyHeader, size: int
) -> bytes:
    """The encoded file of a planned DICOM file (image, truncated image or SR).

    Parameters
    ----------
    img : PlannedImage
        The file; its ``pixels`` (uint16, ``(size, size)``) must be set for an
        image, or a black image is written.
    pat : Patient
        The patient it is filed under.
    site : Site
        That patient's site.
    header : StudyHeader
        UIDs, numbers and time of day from
        :func:`ingest.demo._identifiers.assign_identifiers`.
    size : int
        Rows = columns.

    Returns
    -------
    bytes
        A complete DICOM file, or for ``corrupted_truncated`` one cut inside
        its pixel data.
    """
    if img.kind == "non_image":
        return _encode(_sr_dataset(img, pat, site, header, header["time"]))
    pixels = img.pixels if img.pixels is not None else np.zeros((size, size), np.uint16)
    data = _encode(_image_dataset(img, pixels, pat, site, header, header["time"]))
    if img.kind == "corrupted_truncated":
        data = data[: len(data) - int(_TRUNCATED_SHARE * size * size * 2)]
    return data


def garbage_bytes(rng: np.random.Generator, size: int) -> bytes:
    """Random bytes for a ``.dcm`` file that is not DICOM (no ``DICM`` at byte 128).

    Parameters
    ----------
    rng : numpy.random.Generator
        The ``extra`` stream of the plan.
    size : int
        Image size; the file is ``1024 + 8 * size`` bytes long.
    """
    data = bytearray(rng.integers(0, 256, size=1024 + size * 8, dtype=np.uint8).tobytes())
    if data[128:132] == b"DICM":  # pragma: no cover - astronomically unlikely
        data[128] = 0
    return bytes(data)


def _da(day: _dt.date) -> str:
    """A DA value (``YYYYMMDD``)."""
    return day.strftime("%Y%m%d")


def _ds_str(value: float) -> str:
    """A DS value of at most 16 characters."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.8e}"[:16]


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    """File meta information: SOP class and instance, explicit VR little endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _common_header(
    ds: Dataset, img: PlannedImage, pat: Patient, site: Site, uids: StudyHeader, time_of_day: str
) -> None:
    """Patient, study and equipment attributes shared by images and SR documents."""
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
    ds.PatientAge = f"{age_on(pat.birth_date, img.date):03d}Y"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = uids["study_id"]
    ds.InstanceNumber = img.instance_number


def _image_dataset(
    img: PlannedImage,
    pixels: np.ndarray,
    pat: Patient,
    site: Site,
    uids: StudyHeader,
    time_of_day: str,
) -> Dataset:
    """A CR or DX image dataset with ``pixels`` (uint16, ``(size, size)``) as PixelData."""
    ds = Dataset()
    ds.file_meta = _file_meta(site.sop_class, img.sop_uid)
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
    _image_pixel_module(ds, site, pixels)
    return ds


def _image_pixel_module(ds: Dataset, site: Site, pixels: np.ndarray) -> None:
    """Pixel description, spacing, window, rescale and the pixel data itself."""
    size = pixels.shape[0]
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


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """One item of a code sequence."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _sr_dataset(
    img: PlannedImage, pat: Patient, site: Site, uids: StudyHeader, time_of_day: str
) -> Dataset:
    """A Basic Text SR document with one placeholder finding and no pixel data."""
    ds = Dataset()
    ds.file_meta = _file_meta(SOP_BASIC_TEXT_SR, img.sop_uid)
    _common_header(ds, img, pat, site, uids, time_of_day)
    ds.SOPClassUID = SOP_BASIC_TEXT_SR
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
    """The dataset as a DICOM file (preamble, file meta, dataset)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
