"""Canonical JSON and the SHA-256 of a report's content."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "content_sha256", "normalize"]


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, no whitespace, UTF-8 text, NaN refused (RFC 8785 in spirit).

    Raises
    ------
    ValueError
        For NaN or infinite numbers (reports hold ``None`` for 'not estimable').
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def content_sha256(content: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``content``."""
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def normalize(obj: Any) -> Any:
    """``obj`` as JSON would give it back (tuples to lists, keys to str, numpy scalars to Python)."""
    return json.loads(json.dumps(obj, allow_nan=False, default=_default))


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
