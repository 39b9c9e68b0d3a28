"""Fake identifiers: patient IDs and names, opaque folders and file names, UIDs.

Nothing here is random in the cryptographic sense and nothing comes from the
clock: UIDs are pydicom's ``generate_uid`` over fixed entropy (the generator
name, the config digest and the object's key), file names are SHA-256 of the
digest and the image index, and the folder order and study times come from the
seeded ``headers`` stream. Patient IDs and names say ``DEMO`` so that nobody
takes them for real ones; paths and ``labels.csv`` carry none of them.
"""

from __future__ import annotations

import hashlib

import numpy as np
from pydicom.uid import generate_uid

from ingest.demo._config import GENERATOR_NAME
from ingest.demo._records import Patient, PlannedImage

__all__ = ["StudyHeader", "assign_identifiers", "uid"]

StudyHeader = dict[str, str]
"""Per-file header values: ``study``, ``accession``, ``study_id``, ``time``,
``series`` and ``series_number`` (all strings)."""

_STUDY_HOURS = (7, 19)  # study times fall in [07:00, 19:00)


def uid(digest: str, *parts: object) -> str:
    """A UID fixed by the generator name, the config digest and ``parts``."""
    return str(generate_uid(entropy_srcs=[GENERATOR_NAME, digest, *map(str, parts)]))


def assign_identifiers(
    patients: list[Patient], images: list[PlannedImage], digest: str, rng: np.random.Generator
) -> dict[int, StudyHeader]:
    """Fill in folders, patient IDs and names, paths and UIDs; number studies and series.

    Parameters
    ----------
    patients : list of Patient
        Every planned patient; ``folder``, ``patient_id`` and ``patient_name``
        are set in place.
    images : list of PlannedImage
        Every planned file; ``path`` and (DICOM files) ``sop_uid`` are set in place.
    digest : str
        :func:`ingest.demo._config.config_digest` of the configuration.
    rng : numpy.random.Generator
        The ``headers`` stream: folder order first, then study times.

    Returns
    -------
    dict of int to StudyHeader
        Header values of every DICOM file, by image index.
    """
    _assign_patient_identifiers(patients, rng)
    _assign_paths(patients, images, digest)
    return _assign_uids(images, digest, rng)


def _assign_patient_identifiers(patients: list[Patient], rng: np.random.Generator) -> None:
    """Opaque folder names in a shuffled order, then running patient IDs and names."""
    width = max(4, len(str(len(patients))))
    id_width = max(6, len(str(len(patients))))
    folder_order = rng.permutation(len(patients))
    for pat, folder in zip(patients, folder_order):
        pat.folder = f"{int(folder):0{width}d}"
        pat.patient_id = f"DEMO-PID-{pat.index + 1:0{id_width}d}"
        pat.patient_name = f"DEMO^PATIENT{pat.index + 1:0{id_width}d}"


def _assign_paths(patients: list[Patient], images: list[PlannedImage], digest: str) -> None:
    """``<patient folder>/<16 hex digits>.dcm`` for every file."""
    names: set[str] = set()
    for img in images:
        name = hashlib.sha256(f"{digest}:file:{img.index}".encode()).hexdigest()[:16]
        if name in names:  # pragma: no cover - 64-bit collision
            name = hashlib.sha256(f"{digest}:file2:{img.index}".encode()).hexdigest()[:16]
        names.add(name)
        img.path = f"{patients[img.patient].folder}/{name}.dcm"


def _assign_uids(
    images: list[PlannedImage], digest: str, rng: np.random.Generator
) -> dict[int, StudyHeader]:
    """SOP/Study/Series UIDs, accession and study numbers, series numbers, time of day."""
    studies: dict[str, StudyHeader] = {}
    series_numbers: dict[str, dict[str, int]] = {}
    headers: dict[int, StudyHeader] = {}
    for img in images:
        if img.kind == "corrupted_not_dicom":
            continue
        img.sop_uid = uid(digest, "sop", img.index)
        if img.study_key not in studies:
            studies[img.study_key] = _new_study(len(studies) + 1, img.study_key, digest, rng)
            series_numbers[img.study_key] = {}
        numbers = series_numbers[img.study_key]
        numbers.setdefault(img.series_key, len(numbers) + 1)
        headers[img.index] = {
            **studies[img.study_key],
            "series": uid(digest, "series", img.series_key),
            "series_number": str(numbers[img.series_key]),
        }
    return headers


def _new_study(n: int, study_key: str, digest: str, rng: np.random.Generator) -> StudyHeader:
    """Study UID, accession number, study ID and time of the ``n``-th study (from 1)."""
    hh, mm, ss = (
        int(rng.integers(*_STUDY_HOURS)),
        int(rng.integers(0, 60)),
        int(rng.integers(0, 60)),
    )
    return {
        "study": uid(digest, "study", study_key),
        "accession": f"DEMOACC{n:07d}",
        "study_id": f"{n:06d}",
        "time": f"{hh:02d}{mm:02d}{ss:02d}",
    }
