"""The report model: what a report says, as typed data (no HTML, no layout).

:func:`reports.build_report` fills it from a run directory; the HTML, JSON and PDF
renderers and the dashboard read it. Every number keeps its interval in the one
shape of medaudit (``{"estimate", "ci_low", "ci_high", "level", "method"}``, see
:meth:`audit.stats.Estimate.to_dict`); :meth:`Report.to_dict` is the ``content`` of
``report.json``, whose SHA-256 (:func:`reports.canonical.content_sha256`) lets anyone
check that a report was not edited and still matches its run (``medaudit verify``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "CHECK_STATUSES",
    "REGULATORY_STATUSES",
    "CheckRow",
    "Datasheet",
    "FigureSpec",
    "FindingView",
    "FindingsSection",
    "Gallery",
    "ModelCard",
    "RegulatoryItem",
    "RegulatorySection",
    "Report",
    "Reproducibility",
    "Summary",
    "Table",
    "Thumb",
]

#: Traffic-light states of a check, worst first.
CheckStatus = Literal["failed", "critical", "warning", "ok", "skipped", "not_run"]
CHECK_STATUSES: tuple[str, ...] = ("failed", "critical", "warning", "ok", "skipped", "not_run")
RegulatoryStatus = Literal["evidenced", "partially evidenced", "not evidenced by this run"]
REGULATORY_STATUSES: tuple[str, ...] = ("evidenced", "partially evidenced",
                                        "not evidenced by this run")

#: A table cell: text, a number, nothing, or an interval ``{"estimate", "ci_low", ...}``.
Cell = Any


@dataclass
class Table:
    """A titled table; ``rows`` hold every row (renderers may show the first ones only).

    Attributes
    ----------
    title : str
    columns : list of str
    rows : list of list
        Cells: str, int, float, None, or an interval dict.
    note : str
        One line under the table (method, source, what is left out).
    """

    title: str
    columns: list[str]
    rows: list[list[Cell]]
    note: str = ""


@dataclass
class FigureSpec:
    """Data of one figure; the renderers draw it (once per report).

    Attributes
    ----------
    id : str
        Unique in the report (an HTML anchor).
    kind : {'roc', 'reliability', 'learning_curves', 'class_counts'}
    title, caption : str
    data : dict
        What the figure shows, in numbers (also in ``report.json``).
    """

    id: str
    kind: str
    title: str
    caption: str
    data: dict[str, Any]


@dataclass
class CheckRow:
    """One line of the clinicians' traffic-light table."""

    check: str
    description: str
    status: CheckStatus
    headline: str
    meaning: str
    action: str
    counts: dict[str, int] = field(default_factory=dict)
    finding_ids: list[str] = field(default_factory=list)


@dataclass
class Summary:
    """Section 1: every check with a traffic light and plain sentences."""

    audited: bool
    complete: bool | None
    verdict: str
    counts: dict[str, int]
    checks: list[CheckRow]
    audit_finished_at: str | None = None


@dataclass
class Datasheet:
    """Section 2: the dataset, after Gebru et al. (2021), 'Datasheets for datasets'."""

    source: dict[str, Any]
    counts: dict[str, Any]
    tables: list[Table]
    quarantine: Table
    preprocessing: Table
    warnings: list[str]
    figures: list[FigureSpec] = field(default_factory=list)


@dataclass
class ModelCard:
    """Section 3: the model and its evaluation, after Mitchell et al. (2019), 'Model cards'.

    Attributes
    ----------
    kind : {'trained', 'external', 'none'}
        Trained by medaudit, predictions of a model trained elsewhere, or no model.
    tables : list of Table
        Architecture, training settings, metrics with intervals, folds, masked scoring,
        operating point, predictive values at the stated prevalences.
    operating_points : list of dict
        :meth:`audit.operating_point.OperatingPoint.to_dict` with ``class_name``.
    prevalences : dict
        ``training`` (observed in the evaluated rows) and ``deployment`` (stated in the
        run, or None) with where each came from.
    evaluated : list of dict
        For each model check (subgroups, calibration, prevalence, overfitting, masking):
        ``check``, ``what``, ``status`` ('evaluated' / 'not evaluated by this run'),
        ``finding_ids``.
    galleries : list of Gallery
        An image of each class next to its masked variants (when the run has them).
    """

    kind: str
    note: str
    tables: list[Table]
    operating_points: list[dict[str, Any]]
    prevalences: dict[str, Any]
    evaluated: list[dict[str, Any]]
    figures: list[FigureSpec] = field(default_factory=list)
    galleries: list[Gallery] = field(default_factory=list)


@dataclass
class Thumb:
    """One image of the cache to show: ``row`` of ``images.npy``, optionally masked."""

    sample_id: str
    row: int
    caption: str
    variant: str | None = None


@dataclass
class Gallery:
    """Images of a finding, grouped (a pair, a label issue, an image and its masked variants).

    Attributes
    ----------
    kind : {'images', 'pairs', 'label_issues', 'masked'}
    groups : list of list of Thumb
        Shown together, one group per line or card.
    captions : list of str
        One per group.
    n_candidates : int
        How many groups the finding offered before the caps of :class:`ReportOptions`.
    """

    kind: str
    title: str
    groups: list[list[Thumb]]
    captions: list[str]
    n_candidates: int


@dataclass
class FindingView:
    """A finding as the report shows it (``evidence`` complete, as in ``findings.json``)."""

    id: str
    check: str
    severity: str
    title: str
    message: str
    recommendation: str
    references: list[dict[str, str]]
    evidence: dict[str, Any]
    n_samples: int
    sample_ids: list[str]
    galleries: list[Gallery] = field(default_factory=list)


@dataclass
class FindingsSection:
    """Section 4: every finding in detail, and the checks that did not run."""

    findings: list[FindingView]
    skipped: list[dict[str, str]]
    errors: list[dict[str, str]]


@dataclass
class RegulatoryItem:
    """One checklist item and what this run evidences of it (never a compliance claim)."""

    framework: str
    key: str
    item: str
    asks: str
    status: RegulatoryStatus
    evidence: list[dict[str, str]]
    missing: str


@dataclass
class RegulatorySection:
    """Section 5: CLAIM 2024, TRIPOD+AI, GMLP, EU AI Act Art. 10 items and their evidence."""

    disclaimer: str
    items: list[RegulatoryItem]
    counts: dict[str, int]


@dataclass
class Reproducibility:
    """Section 6: settings, seeds, versions, digests of inputs and artifacts, timings."""

    tables: list[Table]
    input_files: dict[str, Any]
    artifacts: list[dict[str, Any]]


@dataclass
class Report:
    """A report: the sections of one audience, built from one run directory.

    Attributes
    ----------
    schema_version : str
        Version of ``reports/report.schema.json`` the content follows.
    audience : str
    title : str
    sections : list of str
        Section ids in reading order (:data:`reports.options.SECTIONS_FOR`).
    run : dict
        What the run is: classes, number of images, data fingerprint.
    options : dict
        :class:`reports.options.ReportOptions` the report was built with.
    """

    schema_version: str
    audience: str
    title: str
    sections: list[str]
    run: dict[str, Any]
    options: dict[str, Any]
    summary: Summary | None = None
    dataset: Datasheet | None = None
    model: ModelCard | None = None
    findings: FindingsSection | None = None
    regulatory: RegulatorySection | None = None
    reproducibility: Reproducibility | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report content as JSON-ready data (sections not in the audience left out)."""
        out = asdict(self)
        for name in ("summary", "dataset", "model", "findings", "regulatory", "reproducibility"):
            if out[name] is None:
                del out[name]
        return out
