"""The one identifier filter: DICOM PS3.15 Annex E names and common identifier names."""

from __future__ import annotations

import pytest
from pydicom.datadict import tag_for_keyword

from ingest.identifiers import (
    ANNEX_E_KEYWORDS,
    RETAINED_COLUMNS,
    identifier_reason,
    normalize_column_name,
    split_identifier_columns,
)

#: Names a new user tried that an earlier filter kept, values included.
MISSED_BEFORE = ["PatientName", "PatientBirthDate", "StudyDate", "AccessionNumber",
                 "InstitutionAddress", "ReferringPhysicianName", "medical_record_number",
                 "surname", "zip"]


@pytest.mark.parametrize("name", [*MISSED_BEFORE, "patient_name", "dob", "mrn"])
def test_identifier_names_are_recognised(name: str) -> None:
    assert identifier_reason(name) is not None


@pytest.mark.parametrize(
    "spelling", ["PatientBirthDate", "patient_birth_date", "Patient Birth Date",
                 "PATIENT-BIRTH-DATE", "patient.birth.date", " patientbirthdate "])
def test_case_and_separators_do_not_matter(spelling: str) -> None:
    assert identifier_reason(spelling) == "DICOM PS3.15 Annex E attribute 'PatientBirthDate'"


def test_every_annex_e_keyword_is_a_dicom_keyword() -> None:
    unknown = sorted(k for k in ANNEX_E_KEYWORDS if tag_for_keyword(k) is None)
    assert unknown == []


@pytest.mark.parametrize("name", [
    *sorted(RETAINED_COLUMNS), "scanner_model", "body_part", "density", "bmi", "dicom_modality",
    "weight", "age_group", "label_reader1"])
def test_clinical_and_our_own_columns_are_kept(name: str) -> None:
    assert identifier_reason(name) is None


def test_split_reports_the_reason_and_honours_keep() -> None:
    kept, dropped = split_identifier_columns(["sop_instance_uid", "exam_date", "view"],
                                             keep=["sop_instance_uid"])
    assert kept == ["sop_instance_uid", "view"]
    assert dropped == {"exam_date": "common identifier name 'exam_date'"}
    assert normalize_column_name("Study Instance-UID") == "studyinstanceuid"
