"""The one label parser: class lists and raw label values -> class indices.

Used by every table that carries labels (manifests, DICOM label tables, the
labels of external predictions) and by the class columns of prediction tables,
so a label means the same thing whichever way it arrives:

* a **class name** is matched exactly (after stripping spaces);
* a **class index** is a number with an integer value >= 0 written in any
  usual way (``1``, ``+1``, ``1.0``); it is valid when it is below K.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from ingest.errors import ManifestError

__all__ = ["ClassMap", "integer_value", "parse_class_index", "resolve_classes"]


def integer_value(value: object) -> int | None:
    """The integer a label text stands for (``'1'``, ``'+1'``, ``'1.0'``, ``'-2'``), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(str(value).strip())
    except ValueError:
        return None
    if not math.isfinite(f) or not f.is_integer():
        return None
    return int(f)


def parse_class_index(value: object) -> int | None:
    """A non-negative integer label (a class index before the range check), else None."""
    i = integer_value(value)
    return i if i is not None and i >= 0 else None


@dataclass(frozen=True)
class ClassMap:
    """Class names in index order and how raw label values map to indices.

    Parameters
    ----------
    names : tuple of str
        K class names; index ``i`` is ``names[i]``.
    """

    names: tuple[str, ...]

    @property
    def k(self) -> int:
        """Number of classes K."""
        return len(self.names)

    def index_of(self, value: object) -> int | None:
        """Index of a raw label value (class name or class index in ``[0, K)``), None if invalid."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        s = str(value).strip()
        if s in self.names:
            return self.names.index(s)
        i = parse_class_index(s)
        return i if i is not None and i < len(self.names) else None


def _all_text(values: Iterable[object]) -> list[str]:
    return [str(v).strip() for v in values if v is not None and not pd.isna(v) and str(v).strip()]


def resolve_classes(values: pd.Series | Sequence[object], classes: Sequence[str] | None) -> ClassMap:
    """Decide the class list from the labels (or take the one given).

    Without ``classes``: when at least half of the values are integers the
    classes are ``'0' .. str(max)``; otherwise the sorted distinct names.

    Parameters
    ----------
    values : pandas.Series or sequence
        Raw label values.
    classes : sequence of str, optional
        The class names in index order.

    Returns
    -------
    ClassMap

    Raises
    ------
    ManifestError
        When ``classes`` repeats a name, or integer labels are negative.
    """
    if classes:
        names = tuple(str(c).strip() for c in classes)
        if len(set(names)) != len(names):
            raise ManifestError(f"the class list has duplicate names: {list(names)}")
        return ClassMap(names)
    raw = _all_text(values)
    ints = [i for i in (integer_value(v) for v in raw) if i is not None]
    if raw and len(ints) >= 0.5 * len(raw):
        if min(ints) < 0:
            raise ManifestError(
                f"integer labels must be >= 0; got {min(ints)}; use class names or indices 0..K-1"
            )
        return ClassMap(tuple(str(i) for i in range(max(ints) + 1)))
    return ClassMap(tuple(sorted(set(raw))))
