"""The examples under docs/examples run end to end (so that they never rot)."""

from __future__ import annotations

import runpy
import warnings
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "docs" / "examples").glob("*.py"))


def test_there_is_an_example() -> None:
    assert any(p.name == "audit_external_model.py" for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDAUDIT_EXAMPLE_OUT", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "all assertions hold" in out
    if path.name == "audit_external_model.py":
        assert (tmp_path / "run" / "findings.json").is_file()
        cells = path.read_text(encoding="utf-8").count("# %%")
        assert cells >= 10  # a notebook in Jupyter's percent format
