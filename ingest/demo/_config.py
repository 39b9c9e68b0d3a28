"""What the demo generator is asked for (:class:`DemoConfig`) and what it writes where.

Holds the configuration, its validation, the short digest that keys every
identifier derived from it, the class names, and the layout of the output
directory (:class:`DemoDataset`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "DICOM_DIR",
    "GENERATOR_NAME",
    "GROUND_TRUTH_FILE",
    "LABELS_FILE",
    "DemoConfig",
    "DemoDataset",
    "config_digest",
    "validate_config",
]

CLASS_NAMES: tuple[str, str] = ("normal", "nodule")
"""Class names; index 0 is the negative class, index 1 the positive class."""

GENERATOR_NAME = "medaudit.demo"
"""Value of the ``generator`` key of ``ground_truth.json``."""

LABELS_FILE = "labels.csv"
"""Name of the labels table under the output directory."""

GROUND_TRUTH_FILE = "ground_truth.json"
"""Name of the ground-truth sidecar under the output directory."""

DICOM_DIR = "dicom"
"""Folder under the output directory that holds every generated file."""

_MSG_CONFIG_TYPE = "config must be a DemoConfig; got {got!r}"

# Integer fields and their minimum.
_INT_MINIMUMS = {
    "n_patients": 2,
    "image_size": 32,
    "n_exact_duplicates": 0,
    "n_near_duplicates": 0,
    "n_cross_patient_duplicates": 0,
    "n_corrupted": 0,
    "n_non_image": 0,
    "seed": 0,
}
_MAX_IMAGE_SIZE = 4096
# Fields added after identifiers were first derived, with their default (see config_digest).
_ADDED_FIELDS = {"shortcuts": True}
# Rate fields: (low, high, low end included); the high end is always excluded.
_RATE_BOUNDS = {
    "prevalence": (0.0, 1.0, False),
    "screening_prevalence": (0.0, 1.0, False),
    "label_noise_fn_rate": (0.0, 1.0, True),
    "label_noise_fp_rate": (0.0, 1.0, True),
}


@dataclass(frozen=True)
class DemoConfig:
    """Configuration of the synthetic demo dataset.

    Parameters
    ----------
    n_patients : int, default 1400
        Number of patients. About 20 % of them have 2 to 4 images (follow-ups),
        so the default yields about 2,000 images. Cross-patient duplicates add
        one extra (mis-filed) patient each.
    image_size : int, default 128
        Stored DICOM Rows = Columns.
    prevalence : float, default 0.25
        Overall positive ('nodule') rate of the TRUE labels over the readable
        images. Sites differ strongly around this value.
    screening_prevalence : float, default 0.05
        Documented deployment prevalence, recorded in the ground truth for
        later recalibration checks; it does not affect the images.
    label_noise_fn_rate : float, default 0.12
        Fraction of true-positive images whose recorded label is 'normal'.
    label_noise_fp_rate : float, default 0.03
        Fraction of true-negative images whose recorded label is 'nodule'.
    n_exact_duplicates : int, default 12
        Pixel-identical copies saved as a second file of the same patient.
    n_near_duplicates : int, default 12
        Copies of the same patient with a 1-2 pixel shift, a small brightness
        change and a little extra noise.
    n_cross_patient_duplicates : int, default 6
        Pixel-identical copies filed under a different (new) patient ID.
    n_corrupted : int, default 4
        Unreadable files: DICOMs truncated inside the pixel data and, when
        ``n_corrupted >= 2``, one file of random bytes with a ``.dcm`` name.
    n_non_image : int, default 1
        DICOM files without pixel data (Basic Text SR documents).
    seed : int, default 0
        Seed of every random choice.
    shortcuts : bool, default True
        Plant the site shortcut: site_b's prevalence is 2.2 times the overall
        rate (site_a about half of it) and only site_b's images carry the 'R'
        marker. ``False`` generates the same kind of data without shortcuts:
        every site at the overall prevalence, and the marker burned into a
        random 20 % of the images whatever their site or label (the sites keep
        their scanners and looks, which then carry no label information).
    """

    n_patients: int = 1400
    image_size: int = 128
    prevalence: float = 0.25
    screening_prevalence: float = 0.05
    label_noise_fn_rate: float = 0.12
    label_noise_fp_rate: float = 0.03
    n_exact_duplicates: int = 12
    n_near_duplicates: int = 12
    n_cross_patient_duplicates: int = 6
    n_corrupted: int = 4
    n_non_image: int = 1
    seed: int = 0
    shortcuts: bool = True


@dataclass(frozen=True)
class DemoDataset:
    """Paths of a generated demo dataset.

    Attributes
    ----------
    root : Path
        The output directory.
    dicom_dir : Path
        ``root / "dicom"``; every path in the CSV and JSON is relative to it.
    labels_csv : Path
        ``root / "labels.csv"`` with columns ``path`` and ``label`` (the recorded,
        possibly flipped, class name). SOP Instance UIDs are left out on purpose:
        ingestion treats such a column as a direct identifier.
    ground_truth : Path
        ``root / "ground_truth.json"``, read it with :func:`load_ground_truth`.
    """

    root: Path
    dicom_dir: Path
    labels_csv: Path
    ground_truth: Path


def validate_config(config: DemoConfig) -> DemoConfig:
    """Check every field of ``config`` and return it with plain Python numbers.

    Parameters
    ----------
    config : DemoConfig
        The configuration to check.

    Returns
    -------
    DemoConfig
        A copy whose integer fields are ``int`` and rate fields ``float``, so
        that it round-trips through JSON.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`DemoConfig` or a field has the wrong type.
    ValueError
        Listing every field that is out of range.
    """
    if not isinstance(config, DemoConfig):
        raise TypeError(_MSG_CONFIG_TYPE.format(got=type(config).__name__))
    if not isinstance(config.shortcuts, (bool, np.bool_)):
        raise TypeError(f"DemoConfig.shortcuts must be a bool; got {type(config.shortcuts).__name__}")
    problems = _int_problems(config) + _rate_problems(config)
    if problems:
        raise ValueError("invalid DemoConfig: " + "; ".join(problems))
    return dataclasses.replace(
        config,
        **{name: int(getattr(config, name)) for name in _INT_MINIMUMS},
        **{name: float(getattr(config, name)) for name in _RATE_BOUNDS},
        shortcuts=bool(config.shortcuts),
    )


def _int_problems(config: DemoConfig) -> list[str]:
    """Range problems of the integer fields; raise ``TypeError`` on a non-int."""
    problems: list[str] = []
    for name, minimum in _INT_MINIMUMS.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"DemoConfig.{name} must be an int; got {type(value).__name__}")
        if value < minimum:
            problems.append(f"DemoConfig.{name} must be >= {minimum}; got {value}")
    if config.image_size > _MAX_IMAGE_SIZE:
        problems.append(
            f"DemoConfig.image_size must be <= {_MAX_IMAGE_SIZE}; got {config.image_size}"
        )
    return problems


def _rate_problems(config: DemoConfig) -> list[str]:
    """Range problems of the rate fields; raise ``TypeError`` on a non-number."""
    problems: list[str] = []
    for name, (lo, hi, closed_lo) in _RATE_BOUNDS.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise TypeError(f"DemoConfig.{name} must be a float; got {type(value).__name__}")
        ok = (lo <= value if closed_lo else lo < value) and value < hi
        if not ok or not math.isfinite(value):
            bracket = "[" if closed_lo else "("
            problems.append(f"DemoConfig.{name} must be in {bracket}{lo}, {hi}); got {value}")
    return problems


def config_digest(config: DemoConfig) -> str:
    """16 hex digits of SHA-256 over the config as sorted JSON.

    Every UID and file name is derived from it, so two configurations never
    share identifiers and one configuration always gets the same ones. Fields
    added later (:data:`_ADDED_FIELDS`) count only when they differ from their
    default, so that the identifiers of every earlier configuration stay as
    they were.
    """
    fields = dataclasses.asdict(config)
    for name, default in _ADDED_FIELDS.items():
        if fields[name] == default:
            del fields[name]
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
