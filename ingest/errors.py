"""Errors of the ingestion stage (all ``ValueError`` subclasses: the CLI exits with code 2)."""

from __future__ import annotations

__all__ = ["ManifestError"]


class ManifestError(ValueError):
    """A table of inputs is unusable as a whole (missing column, duplicate key, one class)."""
