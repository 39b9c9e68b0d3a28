"""Render the report as PDF: WeasyPrint lays out the very HTML of :mod:`reports.render_html`.

Why WeasyPrint: it renders the same template and style sheet as the HTML report, so the
two cannot drift apart; CSS paged media gives page numbers (``counter(page)``), a table of
contents with page numbers (``target-counter``), repeated table headers and page breaks
that keep rows, figures and thumbnails whole; the inline SVG figures stay vector graphics;
and it installs from PyPI as pure Python over the Pango text library, which Linux
distributions ship (Debian: ``libpango-1.0-0``, ``libpangoft2-1.0-0``). A PDF library
drawing the report model (reportlab, fpdf2) would need a second layout of every
section to keep in step with the HTML.

The renderer fetches nothing: every resource of the HTML is inline, and any other URL
is refused.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

__all__ = ["MSG_NO_PDF_BACKEND", "PdfBackendUnavailable", "pdf_backend", "render_pdf"]

MSG_NO_PDF_BACKEND = (
    "PDF output needs WeasyPrint and the Pango text library ({error}); install them with "
    "`pip install weasyprint` and, on Debian or Ubuntu, `apt-get install libpango-1.0-0 "
    "libpangoft2-1.0-0`, or leave 'pdf' out of the formats"
)


class PdfBackendUnavailable(ImportError):
    """WeasyPrint (or the Pango library under it) cannot be loaded."""


def pdf_backend() -> Any:
    """The ``weasyprint`` module.

    Raises
    ------
    PdfBackendUnavailable
        Naming what to install.
    """
    try:
        with warnings.catch_warnings():  # "HarfBuzz-Subset will be required by future versions"
            warnings.simplefilter("ignore", DeprecationWarning)
            import weasyprint
    except (ImportError, OSError) as err:  # OSError: the Pango shared library is missing
        raise PdfBackendUnavailable(MSG_NO_PDF_BACKEND.format(
            error=" ".join(f"{type(err).__name__}: {err}".split())[:300])) from None
    return weasyprint


def _fetcher(weasyprint: Any) -> Any:
    """A URL fetcher that serves ``data:`` URIs only (the report must be self-contained)."""
    urls = weasyprint.urls
    if hasattr(urls, "URLFetcher"):  # WeasyPrint >= 66
        return urls.URLFetcher(allowed_protocols=("data",))

    def fetch(url: str, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - old API
        if not url.startswith("data:"):
            raise ValueError(f"the report must be self-contained; refused to fetch {url[:80]!r}")
        return urls.default_url_fetcher(url, *args, **kwargs)

    return fetch


def render_pdf(html: str) -> bytes:
    """Lay out the report HTML as a paginated PDF (A4, page numbers, table of contents).

    Parameters
    ----------
    html : str
        From :func:`reports.render_html.render_html`.

    Returns
    -------
    bytes
        The PDF.

    Raises
    ------
    PdfBackendUnavailable
        When WeasyPrint or Pango is not installed.
    """
    weasyprint = pdf_backend()
    # Font subsetting logs a line per font table, and WeasyPrint warns about every SVG
    # presentation attribute it reads from a style attribute (it draws them all the same):
    # noise for a user, so only errors are let through while the PDF is laid out.
    quiet = [logging.getLogger(n) for n in ("fontTools", "weasyprint")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return weasyprint.HTML(string=html, url_fetcher=_fetcher(weasyprint)).write_pdf()
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
