"""The user's manifest CSV: read, validate (pandera, lazily), map labels to indices.

Two kinds of problems are told apart:

* **Table-level** problems make the manifest unusable as a whole (no ``label``
  column, no ``path`` column, a duplicated ``path``, only one class): they raise
  :class:`ManifestError` with one message listing every such problem; the CLI
  exits with code 2.
* **Row-level** problems (a label that is not a class, an age that is not a
  number, an empty path) refuse that row only: every bad row is reported at once
  with its row number, column, value and the fix, goes to ``quarantine.csv``,
  and the run continues with the others.

Columns
-------
``path`` (required; relative to the CSV or absolute), ``label`` (required; a
class name or a class index), optional ``sample_id``, ``patient_id``,
``study_id``, ``site``, ``scanner``, ``sex`` (F/M/O, also female/male/other),
``age`` (years), ``view``, ``split``, annotator columns ``label_<annotator>``;
any other column is kept as metadata, except columns whose name suggests
direct identifiers (names, dates, accession numbers, addresses), which are
dropped with a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from audit._schemas import ANNOTATOR_PREFIX, UNLABELED, UNLABELED_NAME, annotator_columns
from ingest.errors import ManifestError
from ingest.identifiers import drop_identifier_columns
from ingest.labels import ClassMap, resolve_classes
from ingest.limits import regular_file_problem

__all__ = [
    "ANNOTATOR_PREFIX",
    "ClassMap",
    "ManifestError",
    "ParsedTable",
    "read_csv_table",
    "read_manifest_csv",
    "resolve_classes",
    "validate_label_table",
]

_SEX_ALIASES = {
    "f": "F", "female": "F", "w": "F", "woman": "F",
    "m": "M", "male": "M", "man": "M",
    "o": "O", "other": "O",
}  # fmt: skip

MSG_LABEL = (
    "column {col!r} must be a class name in {names} or an index in [0, {k}); got {value!r} "
    "at row {row}{where}; fix the value, or give the full class list if it is a class"
)
MSG_AGE = "column 'age' must be a number of years in [0, 130]; got {value!r} at row {row}{where}"
MSG_SEX = "column 'sex' must be one of F, M, O (or female/male/other); got {value!r} at row {row}{where}"
MSG_PATH = "column 'path' is empty at row {row}; give the image file of this row"
#: A class with fewer accepted images than this is reported (often a typo in a label).
MIN_CLASS_IMAGES = 3
MSG_RARE_CLASS = (
    "class {name!r} has only {n} image(s): if it is a typo, fix the label, or give the "
    "intended class list so that such values are refused"
)
MSG_NO_PATIENT = (
    "no patient_id given: each image is treated as its own patient, so leakage "
    "checks cannot see several images of one patient and folds cannot group them"
)


@dataclass
class ParsedTable:
    """A validated label table.

    Attributes
    ----------
    rows : pandas.DataFrame
        Accepted rows, original columns plus ``label`` (int64), ``label_name``,
        ``_row`` (1-based row number in the file), normalised ``sex``/``age``
        and annotator columns as float class indices (NaN = not labelled).
    refused : pandas.DataFrame
        ``source``, ``reason`` for every refused row.
    classes : ClassMap
    warnings : list of str
    """

    rows: pd.DataFrame
    refused: pd.DataFrame
    classes: ClassMap
    warnings: list[str] = field(default_factory=list)


MSG_SEPARATOR = (
    "{path}: has a single column {header!r}, which contains {sep!r}: the file seems to use "
    "{name} as separator; save it as a comma-separated CSV"
)


def read_csv_table(path: str | os.PathLike[str], *, what: str = "manifest") -> pd.DataFrame:
    """Read a user's CSV table as text columns (the one CSV reader of ingestion).

    Parameters
    ----------
    path : path-like
        The CSV file.
    what : str
        What the table is, for messages (``"manifest"``, ``"labels CSV"`` ...).

    Returns
    -------
    pandas.DataFrame
        Every column as ``str`` (``None`` for empty cells), names stripped.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ManifestError
        When it is a folder or device, not UTF-8 text, not CSV, empty, or uses
        ``;`` or a tab as separator (with that hint).
    """
    p = Path(path)
    problem = regular_file_problem(p)
    if problem is not None:
        if problem.startswith("no such"):
            raise FileNotFoundError(f"{what} {p} not found")
        raise ManifestError(f"{what} {p} {problem}; give a CSV file")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
    except UnicodeDecodeError as err:
        raise ManifestError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start}); save the "
                            f"{what} as a UTF-8 CSV") from None
    except pd.errors.ParserError as err:
        raise ManifestError(f"{p}: not a readable CSV ({' '.join(str(err).split())}); save the "
                            f"{what} as a UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{p}: the file is empty; expected a header row and data") from None
    df.columns = [str(c).strip() for c in df.columns]
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise ManifestError(f"{p}: column(s) {dupes} appear more than once (spaces around names are "
                            "ignored); keep one column of each name")
    if len(df.columns) == 1:
        header = df.columns[0]
        for sep, name in ((";", "a semicolon"), ("\t", "a tab"), ("|", "a vertical bar")):
            if sep in header:
                raise ManifestError(MSG_SEPARATOR.format(path=p, header=header, sep=sep, name=name))
    return df


def _where(df: pd.DataFrame, i: int, key_col: str) -> str:
    if key_col in df.columns and isinstance(df.at[i, key_col], str):
        return f" ({key_col}={df.at[i, key_col]!r})"
    return ""


def validate_label_table(
    df: pd.DataFrame,
    *,
    source: str,
    key_col: str,
    classes: Sequence[str] | None = None,
    quote_key: bool = True,
    require_labels: bool = True,
) -> ParsedTable:
    """Validate a label table lazily and map labels to class indices.

    Parameters
    ----------
    df : pandas.DataFrame
        String columns as read from the CSV; must have ``label`` and ``key_col``.
    source : str
        File name used in messages.
    key_col : str
        The column identifying a row's image (``path``, ``sop_instance_uid``...);
        must be present and unique.
    classes : sequence of str, optional
        Class names in index order.
    quote_key : bool
        Quote the key value of a refused row in messages and as its ``source``;
        False for identifying keys (UIDs), which are then named by row number.

    Returns
    -------
    ParsedTable

    Raises
    ------
    ManifestError
        Listing every table-level problem.
    """
    problems = []
    unlabeled = not require_labels and "label" not in df.columns
    if unlabeled:
        if not classes:
            raise ManifestError(f"{source}: unlabeled data needs the class list of the model "
                                "(pass classes)")
        df = df.copy()
        df["label"] = "0"  # placeholder: validated like a label, replaced below
    if "label" not in df.columns:
        problems.append(f"{source}: no 'label' column; columns are {list(df.columns)}")
    if key_col not in df.columns:
        problems.append(f"{source}: no {key_col!r} column; columns are {list(df.columns)}")
    if not len(df):
        problems.append(f"{source}: no data rows")
    if problems:
        raise ManifestError("\n".join(problems))
    df = df.reset_index(drop=True).copy()
    keys = df[key_col].dropna().str.strip()
    dup = keys[keys.duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        rows = (np.flatnonzero(df[key_col].str.strip() == first) + 1).tolist()
        raise ManifestError(
            f"{source}: column {key_col!r} has {dup.nunique()} duplicated value(s), e.g. "
            f"{first!r} at rows {rows}; each image must appear once"
        )
    cmap = resolve_classes(df["label"], classes)
    ann_cols = annotator_columns(df.columns)

    def _label_ok(s: pd.Series) -> pd.Series:
        return s.map(lambda v: cmap.index_of(v) is not None)

    def _ann_ok(s: pd.Series) -> pd.Series:
        return s.isna() | _label_ok(s)

    def _age_ok(s: pd.Series) -> pd.Series:
        num = pd.to_numeric(s, errors="coerce")
        return s.isna() | ((num >= 0) & (num <= 130))

    def _sex_ok(s: pd.Series) -> pd.Series:
        return s.isna() | s.str.strip().str.lower().isin(_SEX_ALIASES)

    columns: dict[str, pa.Column] = {
        "label": pa.Column(object, pa.Check(_label_ok, name="label"), nullable=True),
        key_col: pa.Column(object, pa.Check(lambda s: s.str.strip() != "", name="key"), nullable=True),
    }
    if "age" in df.columns:
        columns["age"] = pa.Column(object, pa.Check(_age_ok, name="age"), nullable=True)
    if "sex" in df.columns:
        columns["sex"] = pa.Column(object, pa.Check(_sex_ok, name="sex"), nullable=True)
    for c in ann_cols:
        columns[c] = pa.Column(object, pa.Check(_ann_ok, name="annotator"), nullable=True)
    schema = pa.DataFrameSchema(columns, strict=False)
    reasons: dict[int, list[str]] = {}
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as err:
        fc = err.failure_cases.dropna(subset=["index"])
        for _, case in fc.iterrows():
            i, col = int(case["index"]), str(case["column"])
            value = df.at[i, col] if col in df.columns else case["failure_case"]
            row, where = i + 1, _where(df, i, key_col if quote_key and key_col != col else "")
            if col == "age":
                msg = MSG_AGE.format(value=value, row=row, where=where)
            elif col == "sex":
                msg = MSG_SEX.format(value=value, row=row, where=where)
            elif col == key_col:
                msg = f"column {key_col!r} is empty at row {row}; give the image of this row"
            else:
                msg = MSG_LABEL.format(col=col, names=list(cmap.names), k=len(cmap.names),
                                       value=value, row=row, where=where)
            reasons.setdefault(i, []).append(msg)
    # Null keys and labels are not 'check' failures in pandera (nullable): add them.
    for i in np.flatnonzero(df[key_col].isna().to_numpy()):
        reasons.setdefault(int(i), []).append(
            f"column {key_col!r} is empty at row {i + 1}; give the image of this row"
        )
    for i in np.flatnonzero(df["label"].isna().to_numpy()):
        reasons.setdefault(int(i), []).append(
            MSG_LABEL.format(col="label", names=list(cmap.names), k=len(cmap.names),
                             value="", row=i + 1,
                             where=_where(df, int(i), key_col if quote_key else ""))
        )
    bad = sorted(reasons)
    refused = pd.DataFrame(
        {
            "source": [str(df.at[i, key_col]) if quote_key and isinstance(df.at[i, key_col], str)
                       else f"{source} row {i + 1}" for i in bad],
            "reason": ["; ".join(dict.fromkeys(reasons[i])) for i in bad],
        }
    )
    ok = df.drop(index=bad).copy()
    ok["_row"] = ok.index + 1
    ok["label"] = ok["label"].map(cmap.index_of).astype("int64")
    ok["label_name"] = ok["label"].map(lambda i: cmap.names[i])
    for c in ann_cols:
        ok[c] = ok[c].map(cmap.index_of).astype("float64")
    if "sex" in ok.columns:
        ok["sex"] = ok["sex"].map(lambda v: _SEX_ALIASES.get(str(v).strip().lower()) if isinstance(v, str) else None)
    if "age" in ok.columns:
        ok["age"] = pd.to_numeric(ok["age"], errors="coerce")
    if unlabeled:
        ok["label"] = np.int64(UNLABELED)
        ok["label_name"] = UNLABELED_NAME
    present = sorted(set(ok["label"]))
    if len(present) < 2 and require_labels:
        raise ManifestError(
            f"{source}: only one class among the accepted rows ({[cmap.names[i] for i in present]}); "
            f"an audit needs at least two classes ({len(refused)} rows were refused)"
        )
    notes = []
    counts = ok["label"].value_counts()
    for i, cnt in counts[counts < MIN_CLASS_IMAGES].items() if not classes and not unlabeled else ():
        notes.append(MSG_RARE_CLASS.format(name=cmap.names[int(i)], n=int(cnt)))
    ok, dropped = drop_identifier_columns(ok, source=source, keep=[key_col, "_row", *ann_cols])
    notes += dropped
    return ParsedTable(ok.reset_index(drop=True), refused, cmap, notes)


def read_manifest_csv(
    path: str | os.PathLike[str], *, classes: Sequence[str] | None = None,
    require_labels: bool = True,
) -> ParsedTable:
    """Read and validate a manifest CSV (``path`` + ``label`` + optional columns).

    ``require_labels=False`` makes ``label`` optional (see :func:`validate_label_table`).
    Adds ``abs_path`` (the resolved file) and ``rel_path`` (as written, POSIX).

    Raises
    ------
    FileNotFoundError
        When the CSV does not exist.
    ManifestError
        For table-level problems (see the module docstring).
    """
    p = Path(path)
    table = validate_label_table(read_csv_table(p), source=p.name, key_col="path", classes=classes,
                                 require_labels=require_labels)
    base = p.resolve().parent
    rows = table.rows
    rows["rel_path"] = rows["path"].str.strip().map(lambda s: Path(s).as_posix())
    rows["abs_path"] = rows["rel_path"].map(lambda s: str(Path(s) if Path(s).is_absolute() else base / s))
    if "patient_id" not in rows.columns or rows["patient_id"].isna().all():
        table.warnings.append(MSG_NO_PATIENT)
    for w in table.warnings:
        warnings.warn(w, stacklevel=2)
    return table
