"""The one place that decides which table columns are direct identifiers.

Every way data enters medaudit (manifests, DICOM label tables, external
predictions and their metadata) passes its columns through
:func:`split_identifier_columns`. A column is an identifier when its name,
compared case- and separator-insensitively (``PatientName``, ``patient_name``,
``Patient Name`` and ``PATIENT-NAME`` are the same name), is

1. an attribute of the **DICOM PS3.15 Annex E Basic Application Level
   Confidentiality Profile** (Table E.1-1) by keyword or its snake_case form,
   e.g. ``PatientBirthDate`` / ``patient_birth_date``, ``AccessionNumber``,
   ``InstitutionAddress``, ``ReferringPhysicianName``, ``StudyDate``;
2. a common name for a name, birth date, record number, address, phone number
   or e-mail (``dob``, ``mrn``, ``medical_record_number``, ``surname``, ``zip``,
   ``email`` ...); or
3. a name containing an identifying word (``name``, ``birth``, ``date``,
   ``accession``, ``address``, ``phone``, ``email``, ``uid`` ...), e.g.
   ``exam_date`` or ``mother_maiden_name``.

Such columns are dropped with a warning before anything is written (their
values never reach an output). The columns medaudit itself defines are kept:
``patient_id``, ``study_id`` and ``site`` are replaced by keyed hashes
(:mod:`ingest.pseudonymize`); ``sex`` and ``age`` are kept as the Annex E
*Retain Patient Characteristics Option* allows, because subgroup and fairness
checks need them (an Annex E name for them, e.g. ``PatientSex``, is dropped: name
the column ``sex`` to keep it). Free text inside kept columns cannot be
screened: do not put identifiers in ``path``, ``sample_id`` or metadata values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

__all__ = [
    "ANNEX_E_KEYWORDS",
    "COMMON_IDENTIFIER_NAMES",
    "IDENTIFIER_WORDS",
    "MSG_IDENTIFIER_COLUMN",
    "drop_identifier_columns",
    "identifier_reason",
    "normalize_column_name",
    "split_identifier_columns",
]

#: Keywords of the attributes of PS3.15 Annex E, Table E.1-1 (Basic Profile) that
#: can name a column of a table (sequences and UIDs included: they identify too).
ANNEX_E_KEYWORDS: frozenset[str] = frozenset("""
AccessionNumber AcquisitionComments AcquisitionContextSequence AcquisitionDate AcquisitionDateTime
AcquisitionDeviceProcessingDescription AcquisitionProtocolDescription AcquisitionTime AcquisitionUID
ActualHumanPerformersSequence AdditionalPatientHistory AdmissionID AdmittingDate
AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription AdmittingTime AffectedSOPInstanceUID
Allergies AuthorObserverSequence BranchOfService CassetteID ClinicalTrialCoordinatingCenterName
ClinicalTrialProtocolEthicsCommitteeApprovalNumber ClinicalTrialProtocolEthicsCommitteeName
ClinicalTrialSeriesDescription ClinicalTrialSeriesID ClinicalTrialSiteID ClinicalTrialSiteName
ClinicalTrialSponsorName ClinicalTrialSubjectID ClinicalTrialSubjectReadingID
ClinicalTrialTimePointDescription ClinicalTrialTimePointID CommentsOnThePerformedProcedureStep
ConcatenationUID ConfidentialityConstraintOnPatientDataDescription ConsultingPhysicianName
ConsultingPhysicianIdentificationSequence ContentCreatorName ContentCreatorIdentificationCodeSequence
ContentDate ContentSequence ContentTime ContextGroupExtensionCreatorUID ContributionDescription
ContributionDateTime CountryOfResidence CreatorVersionUID CurrentPatientLocation CurveDate CurveTime
CustodialOrganizationSequence DerivationDescription DetectorID DeviceSerialNumber DeviceUID
DeviceDescription LongDeviceDescription DigitalSignatureUID DigitalSignaturesSequence
DimensionOrganizationUID DischargeDiagnosisDescription DistributionAddress DistributionName
DoseReferenceUID EndAcquisitionDateTime EthnicGroup ExpectedCompletionDateTime
FailedSOPInstanceUIDList FiducialUID FillerOrderNumberImagingServiceRequest FrameComments
FrameOfReferenceUID GantryID GeneratorID GraphicAnnotationSequence HumanPerformerName
HumanPerformerOrganization IdentifyingComments ImageComments ImagePresentationComments
ImagingServiceRequestComments Impressions InstanceCoercionDateTime InstanceCreatorUID
InstanceCreationDate InstanceCreationTime InstitutionAddress InstitutionCodeSequence InstitutionName
InstitutionalDepartmentName InsurancePlanIdentification
IntendedRecipientsOfResultsIdentificationSequence InterpretationApproverSequence InterpretationAuthor
InterpretationDiagnosisDescription InterpretationIDIssuer InterpretationRecorder InterpretationText
InterpretationTranscriber IrradiationEventUID IssuerOfAdmissionID IssuerOfPatientID
IssuerOfServiceEpisodeID LargePaletteColorLookupTableUID LastMenstrualDate MAC
MediaStorageSOPInstanceUID MedicalAlerts MedicalRecordLocator MilitaryRank ModifiedAttributesSequence
ModifiedImageDescription ModifyingDeviceID NameOfPhysiciansReadingStudy
NamesOfIntendedRecipientsOfResults ObservationDateTime Occupation OperatorIdentificationSequence
OperatorsName OrderCallbackPhoneNumber OrderEnteredBy OrderEntererLocation OriginalAttributesSequence
OtherPatientIDs OtherPatientIDsSequence OtherPatientNames OverlayDate OverlayTime
PaletteColorLookupTableUID ParticipantSequence PatientAddress PatientAge PatientBirthDate
PatientBirthName PatientBirthTime PatientComments PatientID PatientInsurancePlanCodeSequence
PatientMotherBirthName PatientName PatientPrimaryLanguageCodeSequence PatientReligiousPreference
PatientSex PatientSexNeutered PatientSize PatientState PatientTelephoneNumbers
PatientTelecomInformation PatientTransportArrangements PatientWeight PerformedLocation
PerformedProcedureStepDescription PerformedProcedureStepEndDate PerformedProcedureStepEndTime
PerformedProcedureStepID PerformedProcedureStepStartDate PerformedProcedureStepStartTime
PerformedStationAETitle PerformedStationGeographicLocationCodeSequence PerformedStationName
PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence PerformingPhysicianName
PersonAddress PersonIdentificationCodeSequence PersonName PersonTelephoneNumbers
PersonTelecomInformation PhysicianApprovingInterpretation PhysiciansOfRecord
PhysiciansOfRecordIdentificationSequence PhysiciansReadingStudyIdentificationSequence
PlacerOrderNumberImagingServiceRequest PlateID PreMedication PregnancyStatus ProtocolName
ReasonForStudy ReferencedDigitalSignatureSequence ReferencedFrameOfReferenceUID
ReferencedGeneralPurposeScheduledProcedureStepTransactionUID ReferencedImageSequence
ReferencedPatientAliasSequence ReferencedPatientSequence ReferencedPerformedProcedureStepSequence
ReferencedSOPInstanceMACSequence ReferencedSOPInstanceUID ReferencedSOPInstanceUIDInFile
ReferencedStudySequence ReferringPhysicianAddress ReferringPhysicianIdentificationSequence
ReferringPhysicianName ReferringPhysicianTelephoneNumbers RegionOfResidence
RelatedFrameOfReferenceUID RequestAttributesSequence RequestedContrastAgent
RequestedProcedureComments RequestedProcedureDescription RequestedProcedureID
RequestedProcedureLocation RequestedSOPInstanceUID RequestingPhysician RequestingService
ResponsibleOrganization ResponsiblePerson ResponsiblePersonRole ResultsComments
ResultsDistributionListSequence ResultsIDIssuer ReviewerName ScheduledHumanPerformersSequence
ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianIdentificationSequence
ScheduledPerformingPhysicianName ScheduledProcedureStepDescription ScheduledProcedureStepEndDate
ScheduledProcedureStepEndTime ScheduledProcedureStepID ScheduledProcedureStepLocation
ScheduledProcedureStepStartDate ScheduledProcedureStepStartTime ScheduledStationAETitle
ScheduledStationGeographicLocationCodeSequence ScheduledStationName ScheduledStationNameCodeSequence
ScheduledStudyLocation ScheduledStudyLocationAETitle SeriesDate SeriesDescription SeriesInstanceUID
SeriesTime ServiceEpisodeDescription ServiceEpisodeID SmokingStatus SOPInstanceUID
SourceImageSequence SpecialNeeds StationName StorageMediaFileSetUID StudyComments StudyDate
StudyDescription StudyID StudyIDIssuer StudyInstanceUID StudyTime StudyArrivalDate StudyArrivalTime
StudyCompletionDate StudyCompletionTime StudyVerifiedDate StudyVerifiedTime StudyReadDate
StudyReadTime SynchronizationFrameOfReferenceUID TargetUID TemplateExtensionCreatorUID
TemplateExtensionOrganizationUID TextComments TextString TimezoneOffsetFromUTC TopicAuthor
TopicKeywords TopicSubject TopicTitle TransactionUID UID VerifyingObserverIdentificationCodeSequence
VerifyingObserverName VerifyingObserverSequence VerifyingOrganization VisitComments
""".split())

#: Common column names for direct identifiers that are not DICOM keywords.
COMMON_IDENTIFIER_NAMES: frozenset[str] = frozenset("""
name names first_name firstname given_name middle_name last_name lastname surname family_name
full_name maiden_name initials patient_initials dob birthdate birth_date date_of_birth
birthday birth_year mrn medical_record_number medical_record_no record_number hospital_number
hospital_id nhs_number health_card_number insurance_number ssn social_security_number
national_id passport address street street_address city zip zipcode zip_code postcode
postal_code phone phone_number telephone mobile cell fax email email_address e_mail
accession accession_no accession_id exam_date scan_date visit_date admission_date
""".split())

#: Words that make any column name an identifier (after splitting camelCase and separators).
IDENTIFIER_WORDS: frozenset[str] = frozenset("""
name names surname birth dob date datetime accession mrn address street phone telephone email
ssn zip postcode institution hospital clinic physician operator uid
""".split())

#: Column names medaudit defines itself; never dropped (see the module docstring).
RETAINED_COLUMNS: frozenset[str] = frozenset(
    {"sample_id", "path", "label", "label_name", "patient_id", "study_id", "site", "scanner",
     "sex", "age", "view", "split", "patient_key", "study_key"}
)

MSG_IDENTIFIER_COLUMN = (
    "{source} column {column!r} looks like a direct identifier ({reason}) and was dropped: "
    "identifiers never reach medaudit's outputs; rename the column if it is not one (an "
    "institution or hospital column named 'site' is kept as a keyed hash)"
)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^0-9a-zA-Z]+")


def normalize_column_name(name: object) -> str:
    """Lower-case alphanumerics of ``name``: ``'Patient Birth-Date'`` -> ``'patientbirthdate'``."""
    return _SEPARATORS.sub("", str(name)).lower()


def _words(name: str) -> list[str]:
    return [w.lower() for w in _SEPARATORS.split(_CAMEL.sub(" ", name)) if w]


_ANNEX_E = {normalize_column_name(k): k for k in ANNEX_E_KEYWORDS}
_COMMON = {normalize_column_name(k): k for k in COMMON_IDENTIFIER_NAMES}


def identifier_reason(column: object) -> str | None:
    """Why ``column`` names a direct identifier, or ``None`` when it does not.

    Parameters
    ----------
    column : object
        A column name as written in the user's table.

    Returns
    -------
    str or None
        E.g. ``"DICOM PS3.15 Annex E attribute 'PatientBirthDate'"``.
    """
    text = str(column).strip()
    if text in RETAINED_COLUMNS:
        return None
    norm = normalize_column_name(text)
    if norm in _ANNEX_E:
        return f"DICOM PS3.15 Annex E attribute {_ANNEX_E[norm]!r}"
    if norm in _COMMON:
        return f"common identifier name {_COMMON[norm]!r}"
    hits = sorted(set(_words(text)) & IDENTIFIER_WORDS)
    if hits:
        return f"contains the identifying word {hits[0]!r}"
    return None


def split_identifier_columns(
    columns: Iterable[object], *, keep: Iterable[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """Separate identifier columns from the others.

    Parameters
    ----------
    columns : iterable
        Column names.
    keep : iterable of str
        Names never treated as identifiers (e.g. annotator columns, a join key
        that is removed later by the caller).

    Returns
    -------
    kept : list of str
        Columns that may reach outputs.
    dropped : dict
        Identifier column -> reason.
    """
    keep_set = {str(k) for k in keep}
    kept, dropped = [], {}
    for c in columns:
        name = str(c)
        reason = None if name in keep_set else identifier_reason(name)
        if reason is None:
            kept.append(name)
        else:
            dropped[name] = reason
    return kept, dropped


def drop_identifier_columns(
    frame: pd.DataFrame, *, source: str, keep: Iterable[str] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` without its identifier columns, and one message per dropped column.

    Parameters
    ----------
    frame : pandas.DataFrame
    source : str
        Table name quoted in the messages (e.g. ``"manifest"``, ``"metadata"``).
    keep : iterable of str
        See :func:`split_identifier_columns`.

    Returns
    -------
    frame : pandas.DataFrame
    messages : list of str
        :data:`MSG_IDENTIFIER_COLUMN` per dropped column.
    """
    _, dropped = split_identifier_columns(frame.columns, keep=keep)
    messages = [MSG_IDENTIFIER_COLUMN.format(source=source, column=c, reason=r)
                for c, r in dropped.items()]
    return frame.drop(columns=list(dropped)), messages
