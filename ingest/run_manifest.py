"""From accepted rows to ``manifest.parquet``: pseudonymize, then order and type the columns.

Every ingestion path (images through :mod:`ingest.sources`, external predictions
through :mod:`ingest.predictions`) ends here, so the run manifest has one shape
and one privacy treatment whichever way the data arrived:

* ``patient_id`` becomes ``patient_key`` (rows without one are their own patient),
  ``study_id`` becomes ``study_key`` and ``site`` (an institution) its keyed hash;
  the clear-text identifiers are dropped (:func:`ingest.pseudonymize.pseudonymize`);
* core columns come first (``sample_id``, ``label``, ``label_name``,
  ``patient_key``, ...), then annotator columns, then the rest; columns whose
  names start with ``_`` are working columns and are dropped;
* text columns hold ``str`` or ``None`` (never NaN), as the run-manifest
  schema (:mod:`audit._schemas`) expects.
"""

from __future__ import annotations

import pandas as pd

from audit._schemas import annotator_columns
from ingest.pseudonymize import pseudonymize

__all__ = ["CORE_ORDER", "build_run_manifest", "pseudonymize_columns"]

#: Column order of the run manifest (those present), before annotator and other columns.
CORE_ORDER = ("sample_id", "label", "label_name", "patient_key", "study_key", "site", "scanner",
              "sex", "age", "view", "split", "path")
_TEXT = ("site", "scanner", "sex", "view", "split", "study_key", "path")


def _present(v: object) -> bool:
    return v is not None and not (isinstance(v, float) and pd.isna(v)) and bool(str(v).strip())


def pseudonymize_columns(rows: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """Replace ``patient_id``, ``study_id`` and ``site`` by keyed hashes.

    Parameters
    ----------
    rows : pandas.DataFrame
        Must have ``sample_id``.
    key : bytes
        From :func:`ingest.pseudonymize.load_or_create_secret`.

    Returns
    -------
    pandas.DataFrame
        With ``patient_key`` (always), ``study_key`` and hashed ``site`` (when
        given); without ``patient_id`` and ``study_id``.
    """
    rows = rows.copy()
    pids = rows["patient_id"] if "patient_id" in rows.columns else [None] * len(rows)
    rows["patient_key"] = [
        pseudonymize(p, key=key, kind="patient") if _present(p)
        else pseudonymize(s, key=key, kind="sample")
        for p, s in zip(pids, rows["sample_id"], strict=True)
    ]
    for col, kind, new in (("study_id", "study", "study_key"), ("site", "site", "site")):
        if col in rows.columns:
            rows[new] = [pseudonymize(v, key=key, kind=kind) if _present(v) else None
                         for v in rows[col]]  # type: ignore[arg-type]
    return rows.drop(columns=[c for c in ("patient_id", "study_id") if c in rows.columns])


def _text(v: object) -> str | None:
    return str(v) if _present(v) or (isinstance(v, str) and v == "") else None


def build_run_manifest(rows: pd.DataFrame, *, key: bytes) -> pd.DataFrame:
    """The run manifest from accepted, validated rows (see the module docstring).

    Parameters
    ----------
    rows : pandas.DataFrame
        ``sample_id``, ``label`` (int), ``label_name`` and optional metadata;
        ``rel_path`` becomes ``path``; ``abs_path`` and ``_*`` columns are dropped.
    key : bytes
        Pseudonymisation key.

    Returns
    -------
    pandas.DataFrame
    """
    rows = pseudonymize_columns(rows, key)
    rows = rows.drop(columns=[c for c in rows.columns if c.startswith("_") or c == "abs_path"])
    if "rel_path" in rows.columns:
        rows["path"] = rows.pop("rel_path")
    ordered = [c for c in CORE_ORDER if c in rows.columns] + sorted(annotator_columns(rows.columns))
    rest = [c for c in rows.columns if c not in ordered]
    out = rows[ordered + rest].copy()
    for c in [*_TEXT, *rest]:
        if c in out.columns and (c in _TEXT or out[c].dtype == object):
            out[c] = out[c].map(_text)
    return out
