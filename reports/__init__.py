"""Reports for three audiences, built from a run directory and rendered as HTML, JSON and PDF.

One report model (:func:`build_report`: run directory in, :class:`Report` out, no HTML
inside; the dashboard reuses it) and one renderer per format:

* :func:`write_reports` builds a report once and writes ``report.html`` (self-contained:
  inline SVG figures, PNG thumbnails, no script), ``report.json`` (the same content,
  validated by ``reports/report.schema.json``) and ``report.pdf`` (WeasyPrint laying out
  the same HTML);
* :func:`verify_report` rebuilds the content from the run and names the first field
  that differs.

Sections: summary for clinicians (every check with a traffic light), datasheet, model
card, findings in detail with thumbnails, regulatory mapping, reproducibility.
"""

from reports.build import SCHEMA_VERSION, build_report
from reports.canonical import canonical_json, content_sha256
from reports.evidence import EvidenceView, evidence_view
from reports.model import Report
from reports.options import AUDIENCES, FORMATS, SECTIONS_FOR, ReportOptions
from reports.render_pdf import PdfBackendUnavailable
from reports.verify import VerifyResult, verify_report
from reports.write import WrittenReports, write_reports

__all__ = [
    "AUDIENCES",
    "FORMATS",
    "SCHEMA_VERSION",
    "SECTIONS_FOR",
    "EvidenceView",
    "PdfBackendUnavailable",
    "Report",
    "ReportOptions",
    "VerifyResult",
    "WrittenReports",
    "build_report",
    "canonical_json",
    "content_sha256",
    "evidence_view",
    "verify_report",
    "write_reports",
]
