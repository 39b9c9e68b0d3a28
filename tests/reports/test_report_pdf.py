"""The PDF: renders, paginated with page numbers, a table of contents, the expected sections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from audit.rundir import RunDir
from reports import ReportOptions, write_reports
from reports.render_pdf import PdfBackendUnavailable, pdf_backend

try:
    pdf_backend()
    _REASON = ""
except PdfBackendUnavailable as err:  # pragma: no cover - depends on the machine
    _REASON = str(err)
pytestmark = pytest.mark.skipif(bool(_REASON), reason=f"no PDF backend: {_REASON}")


def _pages(path: Path) -> list[str]:
    pypdf = pytest.importorskip("pypdf")
    return [p.extract_text() for p in pypdf.PdfReader(str(path)).pages]


def test_pdf_has_contents_page_numbers_and_every_section(audited_run: RunDir, tmp_path: Path) -> None:
    written = write_reports(audited_run, formats=["pdf", "json"], out=tmp_path)
    pdf = written.paths["pdf"]
    assert pdf.read_bytes().startswith(b"%PDF-")
    pages = _pages(pdf)
    n = len(pages)
    assert n >= 6
    assert "Contents" in pages[0]
    for i, page in enumerate(pages, 1):
        assert f"page {i} of {n}" in page
    titles = ["Summary for clinicians", "Dataset (datasheet)", "Model and evaluation (model card)",
              "Findings in detail", "Regulatory mapping", "Reproducibility"]
    toc = " ".join(pages[0].split())
    for k, title in enumerate(titles, 1):
        m = re.search(rf"{k}\. {re.escape(title)}[ .]*(\d+)", toc)
        assert m, f"{title} missing from the table of contents"
        page = int(m.group(1))
        assert f"{k}. {title}" in " ".join(pages[page - 1].split()), (title, page)
    text = " ".join(" ".join(pages).split())
    assert written.content_sha256 in text
    assert "not a statement of compliance" in text


def test_clinician_pdf_is_short(audited_run: RunDir, tmp_path: Path) -> None:
    written = write_reports(audited_run, formats=["pdf"], out=tmp_path,
                            options=ReportOptions(audience="clinician"))
    text = " ".join(" ".join(_pages(written.paths["pdf"])).split())
    assert "Summary for clinicians" in text and "Findings in detail" not in text
