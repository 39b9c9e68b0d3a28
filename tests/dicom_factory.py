"""Write small synthetic DICOM files for tests (pydicom only, no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

#: Distinctive identifiers planted by :func:`write_dicom` with ``phi=True``.
PHI = {
    "PatientName": "ZZQPHI^NAME",
    "PatientID": "ZZQPHIID4711",
    "InstitutionName": "ZZQPHI General Hospital",
    "AccessionNumber": "ZZQACC0815",
    "StudyDate": "19991231",
    "PatientBirthDate": "19010203",
    "ReferringPhysicianName": "ZZQPHI^DOCTOR",
}


def new_part10_dataset(
    *, sop_class: str = SecondaryCaptureImageStorage, modality: str = "OT"
) -> Dataset:
    """An empty Explicit VR Little Endian Part-10 dataset with fresh SOP, study and series UIDs."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    return ds


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    patient_id: str | None = None,
    **attrs: object,
) -> Path:
    """Write a grey Explicit VR Little Endian Part-10 file (``pixels`` ``(H, W)`` uint16).

    PHI from :data:`PHI` is always planted (``patient_id`` overrides PatientID);
    extra keyword arguments become DICOM attributes.
    """
    ds = new_part10_dataset(modality="DX")
    for k, v in PHI.items():
        setattr(ds, k, v)
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.PatientSex = "F"
    ds.PatientAge = "057Y"
    ds.Manufacturer = "Acme"
    ds.ManufacturerModelName = "DR-1"
    for k, v in attrs.items():
        setattr(ds, k, v)
    if pixels is not None:
        arr = np.asarray(pixels, dtype=np.uint16)
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def run_dir_text(run: Path) -> str:
    """Every output file as text: raw bytes decoded, plus parquet cell values and names."""
    parts = []
    for f in run.rglob("*"):
        if not f.is_file():
            continue
        parts.append(f.read_bytes().decode("latin-1"))
        if f.suffix == ".parquet":
            df = pd.read_parquet(f)
            parts.append(" ".join(map(str, df.columns)) + df.astype(str).to_csv())
    return "\n".join(parts)
