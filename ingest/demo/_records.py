"""The records the plan fills in: one per patient, one per file, and their dates."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["READABLE_KINDS", "ImageKind", "Patient", "PlannedImage", "age_on", "years_before"]

ImageKind = Literal[
    "original",
    "follow_up",
    "exact_duplicate",
    "near_duplicate",
    "cross_patient_duplicate",
    "corrupted_truncated",
    "corrupted_not_dicom",
    "non_image",
]
"""What a generated file is; the ``kind`` of an image in ``ground_truth.json``."""

READABLE_KINDS: frozenset[str] = frozenset(
    {"original", "follow_up", "exact_duplicate", "near_duplicate", "cross_patient_duplicate"}
)
"""Kinds of the files that hold decodable pixel data."""


@dataclass
class Patient:
    """One patient as planned.

    Attributes
    ----------
    index : int
        Position in the plan's patient list.
    site : int
        Index into :data:`ingest.demo._sites.SITES`.
    n_images : int
        Original plus follow-up images.
    label : int
        True label of every image of the patient.
    sex : str
        ``"F"`` or ``"M"``.
    age : int
        Age in years on ``first_date``.
    birth_date, first_date : datetime.date
        Birth date and date of the first image.
    patient_id, patient_name, folder : str
        Fake identifiers and the opaque folder name, filled in after planning.
    """

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
class PlannedImage:
    """One generated file as planned.

    Attributes
    ----------
    index : int
        Position in the plan's image list.
    patient : int
        The patient the file is filed under.
    true_patient : int
        The patient actually imaged (differs for cross-patient duplicates).
    kind : ImageKind
        What the file is.
    visit : int
        0 for the first image of a patient, higher for later ones.
    true_label : int
        The patient's true label.
    date : datetime.date
        Study date.
    view : str
        ``"PA"``, ``"AP"``, or ``""`` for a non-image file.
    study_key, series_key : str
        Files with equal keys share a study / series UID.
    source : int or None
        Index of the duplicated image, for duplicates.
    render_row : int or None
        Row in the rendered batch, for images with pixels of their own.
    pixels : ndarray of uint16, (size, size), or None
        Stored values, once rendered or copied.
    lesion : dict or None
        Nodule position and size in stored pixels (positives only).
    recorded_label : int
        The label written to ``labels.csv`` (after label noise).
    path : str
        Path relative to ``dicom/``.
    sop_uid : str
        SOP Instance UID (empty for a file that is not DICOM).
    instance_number : int
        Instance Number (0020,0013).
    """

    index: int
    patient: int
    true_patient: int
    kind: ImageKind
    visit: int
    true_label: int
    date: _dt.date
    view: str
    study_key: str
    series_key: str
    source: int | None = None
    render_row: int | None = None
    pixels: np.ndarray | None = None
    lesion: dict[str, float] | None = None
    recorded_label: int = -1
    path: str = ""
    sop_uid: str = ""
    instance_number: int = 1

    @property
    def has_pixels(self) -> bool:
        """Whether the file holds decodable pixel data."""
        return self.kind in READABLE_KINDS


def years_before(day: _dt.date, years: int) -> _dt.date:
    """The same calendar day ``years`` earlier (28 February for 29 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def age_on(birth: _dt.date, day: _dt.date) -> int:
    """Age in whole years on ``day`` of someone born on ``birth``."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
