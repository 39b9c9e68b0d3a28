"""Pandera schemas for the tables of the run directory.

The user-facing manifest (the CSV a user writes) is validated in
``ingest/manifest.py``; this schema is the *internal* contract that every
stage may trust once ingestion has written ``manifest.parquet``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

__all__ = [
    "ANNOTATOR_PREFIX",
    "CORE_COLUMNS",
    "RUN_MANIFEST_SCHEMA",
    "SEX_VALUES",
    "UNLABELED",
    "UNLABELED_NAME",
    "annotator_columns",
    "format_schema_errors",
    "validate_run_manifest",
]

#: Manifest columns every run has; never annotator columns even when they match
#: :data:`ANNOTATOR_PREFIX`.
CORE_COLUMNS: tuple[str, ...] = ("sample_id", "label", "label_name", "patient_key")
#: ``label`` of a row without a label: runs of ``medaudit predict`` on unlabeled images
#: (then ``run.json['has_labels']`` is false and every row is unlabeled).
UNLABELED = -1
#: ``label_name`` of an unlabeled row.
UNLABELED_NAME = "(unlabeled)"
#: Columns ``label_<annotator>`` hold one rater's label each (``label_name`` is not one).
ANNOTATOR_PREFIX = "label_"


def annotator_columns(columns: Iterable[object]) -> list[str]:
    """Names of the annotator columns ``label_<annotator>`` among ``columns``.

    ``label_name`` (a core column) is not an annotator column.
    """
    return [
        str(c) for c in columns
        if str(c).startswith(ANNOTATOR_PREFIX) and str(c) not in CORE_COLUMNS
        and len(str(c)) > len(ANNOTATOR_PREFIX)
    ]

#: Accepted values of the ``sex`` column (DICOM (0010,0040) PatientSex vocabulary).
SEX_VALUES = ("F", "M", "O")

_OPTIONAL_STR = ("site", "scanner", "view", "split", "study_key", "path")

RUN_MANIFEST_SCHEMA = pa.DataFrameSchema(
    {
        "sample_id": pa.Column(str, nullable=False, unique=True, coerce=True),
        "label": pa.Column("int64", pa.Check.ge(UNLABELED), nullable=False, coerce=True),
        "label_name": pa.Column(str, nullable=False, coerce=True),
        "patient_key": pa.Column(str, nullable=False, coerce=True),
        "sex": pa.Column(str, pa.Check.isin(SEX_VALUES), nullable=True, required=False),
        "age": pa.Column(
            float, pa.Check.in_range(0, 130), nullable=True, required=False, coerce=True
        ),
        **{c: pa.Column(str, nullable=True, required=False) for c in _OPTIONAL_STR},
    },
    strict=False,
    ordered=False,
)


def format_schema_errors(err: SchemaErrors, *, source: str, max_lines: int = 20) -> str:
    """One line per failure (column, check, row, value) from a lazy pandera error.

    Parameters
    ----------
    err : pandera.errors.SchemaErrors
        The lazily collected failures.
    source : str
        Where the table came from, quoted in every line.
    max_lines : int
        Failures listed before a ``... and N more`` line.

    Returns
    -------
    str
        A multi-line message, one failure per line.
    """
    cases = err.failure_cases
    lines = []
    for _, case in cases.head(max_lines).iterrows():
        where = "" if pd.isna(case.get("index")) else f" at row {case['index']}"
        lines.append(
            f"{source}: column {case['column']!r} fails {case['check']}{where}: "
            f"got {case['failure_case']!r}"
        )
    if len(cases) > max_lines:
        lines.append(f"... and {len(cases) - max_lines} more failures")
    return "\n".join(lines)


def validate_run_manifest(manifest: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Validate an internal run manifest and return it with coerced dtypes.

    Raises
    ------
    ValueError
        Listing every failure (lazy validation), one per line.
    """
    try:
        return RUN_MANIFEST_SCHEMA.validate(manifest, lazy=True)
    except SchemaErrors as err:
        raise ValueError(
            "manifest.parquet violates the run-directory contract:\n"
            + format_schema_errors(err, source=source)
        ) from None
