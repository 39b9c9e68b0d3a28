"""Settings of a report: its audience and the caps that keep it small."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

__all__ = ["AUDIENCES", "FORMATS", "SECTIONS", "SECTIONS_FOR", "Audience", "Format",
           "ReportOptions"]

Audience = Literal["all", "clinician", "reviewer", "regulatory"]
#: Audiences a report can be written for (``all`` holds every section).
AUDIENCES: tuple[str, ...] = get_args(Audience)
Format = Literal["html", "json", "pdf"]
#: Output formats.
FORMATS: tuple[str, ...] = get_args(Format)

#: Section ids in the order of the complete report.
SECTIONS: tuple[str, ...] = ("summary", "dataset", "model", "findings", "regulatory",
                             "reproducibility")
#: Which sections each audience gets, in reading order. A clinician needs to know in two
#: minutes whether to trust a dataset; a reviewer wants every number, its method and its
#: uncertainty; a regulatory team wants the evidence mapped to the items it must answer
#: first, then the evidence itself.
SECTIONS_FOR: dict[str, tuple[str, ...]] = {
    "all": SECTIONS,
    "clinician": ("summary", "dataset", "model"),
    "reviewer": ("summary", "dataset", "model", "findings", "reproducibility"),
    "regulatory": ("summary", "regulatory", "dataset", "model", "findings", "reproducibility"),
}


@dataclass(frozen=True)
class ReportOptions:
    """What goes into a report and how much of it.

    The options are part of the report's content (``report.json`` records them), so
    :func:`reports.verify_report` rebuilds a report with the options it was made with.

    Attributes
    ----------
    audience : {'all', 'clinician', 'reviewer', 'regulatory'}
        Which sections the report holds (:data:`SECTIONS_FOR`).
    thumbnail_px : int
        Longest side of a thumbnail in pixels; larger cache images are downscaled
        (area averaging), smaller ones kept as they are (the page scales them up).
    max_thumbnails_per_finding : int
        Images (or pairs) shown per finding; the rest are listed by id in ``report.json``.
    max_thumbnails : int
        Images in the whole report. With the defaults a report holds at most about
        150 PNG thumbnails of 96 px (a few kB each), whatever the size of the run.
    max_table_rows : int
        Rows of one evidence table shown in HTML and PDF (``report.json`` has every row).
    max_listed_files : int
        Input files listed with their digests in HTML and PDF (``report.json`` lists all;
        the report also gives one SHA-256 over the complete list).
    reliability_bins : int
        Equal-width bins of the reliability diagram computed from the out-of-fold
        probabilities when no calibration check supplies one.
    n_boot : int
        Bootstrap replicates of the operating point's intervals (patient clusters).
    seed : int
        Seed of that bootstrap.
    """

    audience: Audience = "all"
    thumbnail_px: int = 96
    max_thumbnails_per_finding: int = 8
    max_thumbnails: int = 150
    max_table_rows: int = 25
    max_listed_files: int = 50
    reliability_bins: int = 10
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.audience not in AUDIENCES:
            raise ValueError(f"ReportOptions.audience must be one of {list(AUDIENCES)}; "
                             f"got {self.audience!r}")
        for f in fields(self):
            if f.name == "audience":
                continue
            v = getattr(self, f.name)
            low = 0 if f.name in ("seed", "max_thumbnails", "max_thumbnails_per_finding") else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"ReportOptions.{f.name} must be an integer >= {low}; got {v!r}")
        if not 16 <= self.thumbnail_px <= 512:
            raise ValueError(f"ReportOptions.thumbnail_px must be in [16, 512]; "
                             f"got {self.thumbnail_px}")

    @property
    def sections(self) -> tuple[str, ...]:
        """The section ids of this audience, in reading order."""
        return SECTIONS_FOR[self.audience]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (recorded in ``report.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportOptions:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown report options {unknown}; valid: {sorted(known)}")
        return cls(**data)
