"""Nothing from the UI reaches the file system outside the runs and the data root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dashboard.paths import DataRoot, PathNotAllowedError, RunCatalog, safe_run_name


def _fake_run(p: Path) -> Path:
    p.mkdir(parents=True)
    (p / "manifest.parquet").write_bytes(b"")
    return p


def test_catalog_lists_runs_and_resolves_only_listed_names(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _fake_run(root / "a")
    _fake_run(root / "group" / "b")
    secret = _fake_run(tmp_path / "outside")
    os.symlink(secret, root / "link-out")  # a symlink leaving the folder is not listed
    (root / "not-a-run").mkdir()
    cat = RunCatalog(root)
    assert list(cat.runs()) == ["a", "group/b"]
    assert cat.resolve("group/b") == (root / "group" / "b").resolve()
    for crafted in [
        "../outside",
        str(secret),
        "link-out",
        "a/../../outside",
        "",
        "a/",
        None,
        "group/../../outside",
        "%2e%2e/outside",
    ]:
        with pytest.raises(PathNotAllowedError):
            cat.resolve(crafted)  # type: ignore[arg-type]


def test_single_run_catalog(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "only")
    cat = RunCatalog(run)
    assert cat.single and list(cat.runs()) == ["only"] and cat.new_runs_folder is None
    with pytest.raises(PathNotAllowedError):
        cat.resolve("../only")


def test_data_root_lists_and_resolves_inside_only(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "dicom" / "series").mkdir(parents=True)
    (root / "labels.csv").write_text("a,b\n")
    (root / "dicom" / "m.csv").write_text("a,b\n")
    (tmp_path / "secret.csv").write_text("x\n")
    os.symlink(tmp_path / "secret.csv", root / "escape.csv")
    os.symlink(tmp_path, root / "escape-dir")
    dr = DataRoot(root)
    assert dr.csv_files() == ["dicom/m.csv", "labels.csv"]
    assert dr.folders() == ["dicom", "dicom/series"]
    assert dr.resolve("labels.csv") == (root / "labels.csv").resolve()
    assert dr.resolve("dicom/series", kind="dir") == (root / "dicom" / "series").resolve()
    for crafted in [
        "../secret.csv",
        str(tmp_path / "secret.csv"),
        "escape.csv",
        "dicom/../../secret.csv",
        "escape-dir/secret.csv",
        "missing.csv",
        "",
    ]:
        with pytest.raises(PathNotAllowedError):
            dr.resolve(crafted)
    with pytest.raises(PathNotAllowedError):
        dr.resolve("labels.csv", kind="dir")


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 65, "a b", "..", "/abs"])
def test_run_names_are_plain(name: str) -> None:
    with pytest.raises(PathNotAllowedError):
        safe_run_name(name)


def test_good_run_name() -> None:
    assert safe_run_name(" audit-2026_12.01 ") == "audit-2026_12.01"
