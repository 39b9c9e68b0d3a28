"""report.json against its schema, one interval shape, a self-contained HTML, thumbnails."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from audit.rundir import RunDir
from reports import ReportOptions, write_reports
from reports.figures import render_figure
from reports.model import FigureSpec
from reports.render_json import validate_report_json
from reports.thumbnails import thumbnail_png

INTERVAL_KEYS = {"estimate", "ci_low", "ci_high", "level", "method"}


def _dicts(obj: Any) -> Iterator[dict]:
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _dicts(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _dicts(v)


@pytest.mark.parametrize("audience", ["all", "clinician", "reviewer", "regulatory"])
def test_report_json_follows_the_schema(audited_run: RunDir, tmp_path: Path, audience: str) -> None:
    written = write_reports(audited_run, formats=["json"], out=tmp_path / "out",
                            options=ReportOptions(audience=audience))
    doc = json.loads(written.paths["json"].read_text(encoding="utf-8"))
    assert validate_report_json(doc) == []
    assert doc["content"]["audience"] == audience
    expected = "report.json" if audience == "all" else f"report/{audience}.json"
    assert written.paths["json"] == tmp_path / "out" / expected


def test_schema_rejects_a_broken_report(audited_run: RunDir, tmp_path: Path) -> None:
    written = write_reports(audited_run, formats=["json"], out=tmp_path)
    doc = json.loads(written.paths["json"].read_text(encoding="utf-8"))
    doc["content"]["summary"]["checks"][0]["status"] = "red"
    del doc["content"]["model"]["operating_points"][0]["sensitivity"]["method"]
    problems = validate_report_json(doc)
    assert any(p.startswith("content.summary.checks[0].status") for p in problems)
    assert any("content.model.operating_points[0].sensitivity" in p for p in problems)


def test_every_interval_has_the_one_shape(audited_run: RunDir, tmp_path: Path) -> None:
    written = write_reports(audited_run, formats=["json"], out=tmp_path)
    doc = json.loads(written.paths["json"].read_text(encoding="utf-8"))
    intervals = [d for d in _dicts(doc["content"]) if "ci_low" in d or "ci_high" in d]
    assert len(intervals) > 10
    for d in intervals:
        assert set(d) == INTERVAL_KEYS, d


def test_html_is_self_contained_and_has_the_sections(audited_run: RunDir, tmp_path: Path) -> None:
    written = write_reports(audited_run, formats=["html"], out=tmp_path)
    html = written.paths["html"].read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html, re.I)
    assert "@import" not in html and "<link" not in html.lower()
    srcs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    titles = ["Summary for clinicians", "Dataset (datasheet)", "Model and evaluation (model card)",
              "Findings in detail", "Regulatory mapping", "Reproducibility"]
    positions = [html.index(f"{i}. {t}") for i, t in enumerate(titles, 1)]
    assert positions == sorted(positions)
    assert html.count("<svg") >= 3  # class counts, ROC, reliability, learning curves
    assert 'id="check-annotator_agreement"' in html and "not evaluated" in html
    assert written.content_sha256 in html


def test_clinician_html_has_no_reviewer_sections(audited_run: RunDir, tmp_path: Path) -> None:
    written = write_reports(audited_run, formats=["html"], out=tmp_path,
                            options=ReportOptions(audience="clinician"))
    html = written.paths["html"].read_text(encoding="utf-8")
    assert "Summary for clinicians" in html and "Model and evaluation" in html
    assert "Findings in detail" not in html and "Regulatory mapping" not in html
    assert "Flagged images" not in html and "Image pairs" not in html
    assert "Masked variants the out-of-fold rows were re-scored on" in html  # model card


def test_thumbnails_are_capped(audited_run: RunDir, tmp_path: Path) -> None:
    opts = ReportOptions(max_thumbnails=5, max_thumbnails_per_finding=2, thumbnail_px=16)
    html = write_reports(audited_run, formats=["html"], out=tmp_path, options=opts
                         ).paths["html"].read_text(encoding="utf-8")
    srcs = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)
    assert 0 < len(srcs) <= 5
    import base64

    img = Image.open(io.BytesIO(base64.b64decode(srcs[0])))
    assert max(img.size) <= 16


def test_thumbnail_downscales_and_masks() -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((1, 200, 200)) * 255).astype(np.uint8)
    png = thumbnail_png(img, max_px=64)
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    masked = np.asarray(Image.open(io.BytesIO(thumbnail_png(img, max_px=200,
                                                             variant="center_masked"))))
    assert np.ptp(masked[60:140, 60:140]) == 0 and np.ptp(masked[:20]) > 0
    small = thumbnail_png(img[:, :28, :28], max_px=64)
    assert Image.open(io.BytesIO(small)).size == (28, 28)  # never upscaled in the file


def test_figures_are_deterministic_svg_with_prefixed_ids() -> None:
    spec = FigureSpec("fig-x", "roc", "ROC", "", {"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1],
                                                   "operating_point": {"fpr": 0.5, "tpr": 0.8,
                                                                       "threshold": 0.4}})
    a, b = render_figure(spec), render_figure(spec)
    assert a == b and a.startswith("<svg")
    assert ' id="' in a and all(i.startswith("fig-x-") for i in re.findall(r' id="([^"]+)"', a))
    with pytest.raises(ValueError, match="unknown figure kind 'pie'"):
        render_figure(FigureSpec("f", "pie", "", "", {}))
