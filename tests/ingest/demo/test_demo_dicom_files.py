"""DICOM files: plausible image headers, the SR document, and the broken files."""

from __future__ import annotations

from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from ingest.demo import DemoConfig, DemoDataset

Demo = tuple[DemoDataset, dict[str, Any]]


def test_corrupted_files_fail_to_decode(demo: Demo, small_config: DemoConfig) -> None:
    ds, truth = demo
    kinds = truth["corrupted_kinds"]
    assert set(kinds) == set(truth["corrupted"])
    assert sorted(kinds.values()).count("not_dicom") == 1
    for path in truth["corrupted"]:
        with pytest.raises(Exception):  # noqa: B017 - any failure is the point
            pydicom.dcmread(ds.dicom_dir / path).pixel_array  # noqa: B018
        if kinds[path] == "not_dicom":
            with pytest.raises(InvalidDicomError):
                pydicom.dcmread(ds.dicom_dir / path)
        else:  # a real DICOM header, cut inside the pixel data
            head = pydicom.dcmread(ds.dicom_dir / path, stop_before_pixels=True)
            assert head.Rows == small_config.image_size


def test_non_image_file_has_no_pixel_data(demo: Demo) -> None:
    ds, truth = demo
    for path in truth["non_image"]:
        sr = pydicom.dcmread(ds.dicom_dir / path)
        assert "PixelData" not in sr
        assert sr.Modality == "SR"
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11"


def test_headers_are_plausible(
    demo: Demo, headers: dict[str, pydicom.Dataset], small_config: DemoConfig
) -> None:
    ds, truth = demo
    sop = [h.SOPInstanceUID for h in headers.values()]
    assert len(set(sop)) == len(sop)
    for path, h in headers.items():
        site = truth["sites"][truth["images"][path]["site"]]
        assert (ds.dicom_dir / path).read_bytes()[128:132] == b"DICM"
        assert h.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert (h.BitsAllocated, h.BitsStored, h.HighBit, h.PixelRepresentation) == (16, 12, 11, 0)
        assert h.Rows == h.Columns == small_config.image_size
        assert h.pixel_array.dtype == np.uint16 and h.pixel_array.max() <= 4095
        assert h.BodyPartExamined == "CHEST" and h.ViewPosition in ("PA", "AP")
        assert h.Modality == site["modality"] and h.SOPClassUID == site["sop_class_uid"]
        assert h.Manufacturer == site["manufacturer"]
        assert h.ManufacturerModelName == site["model"]
        assert h.PhotometricInterpretation == site["photometric_interpretation"]
        assert float(h.RescaleSlope) == site["rescale_slope"]
        assert h.PatientID.startswith("DEMO-PID-") and h.PatientAge.endswith("Y")
    used = {h.PhotometricInterpretation for h in headers.values()}
    assert used == {"MONOCHROME1", "MONOCHROME2"}
    assert len({h.Manufacturer for h in headers.values()}) == 3
