"""Regression tests of the reliability issue: nothing lost, hostile inputs refused cleanly."""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.rundir import RunDir
from ingest.errors import ManifestError
from ingest.ingest_cache import default_cache_dir
from ingest.sources import IngestOptions, ingest_manifest

OPTS = IngestOptions(image_size=16)


def _pngs(folder: Path, n: int = 8, *, seed: int = 0, missing: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        if not missing:
            Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["neg", "pos"][i % 2], "patient_id": f"P{i}"})
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)
    return folder / "m.csv"


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".medaudit.lock"}


def test_a_failed_overwrite_keeps_the_run_it_was_meant_to_replace(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ingest_manifest(_pngs(tmp_path / "a"), out, OPTS)
    run = RunDir(out)
    run.write_array("oof/folds", np.zeros(8, np.int16))
    run.update_run_json({"train": {"seed": 0}})
    before = _snapshot(out)
    with pytest.raises(ManifestError, match="no image could be ingested"):
        ingest_manifest(_pngs(tmp_path / "b", missing=True), out, IngestOptions(image_size=16, overwrite=True))
    assert _snapshot(out) == before
    # a successful overwrite replaces everything, the old train block included
    ingest_manifest(_pngs(tmp_path / "c", n=10, seed=1), out, IngestOptions(image_size=16, overwrite=True))
    assert run.n_samples() == 10 and not run.has("oof/folds")
    assert "train" not in run.read_run_json()


def test_editing_a_run_never_changes_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    csv = _pngs(tmp_path / "a")
    ingest_manifest(csv, tmp_path / "r1", OPTS)
    first = RunDir(tmp_path / "r1").read_array("images").copy()
    ingest_manifest(csv, tmp_path / "r2", OPTS)  # cache hit
    assert RunDir(tmp_path / "r2").read_run_json()["ingest"]["cache_hit"]
    images = tmp_path / "r2" / "images.npy"
    assert os.stat(images).st_nlink == 1                       # a copy, not a hard link
    arr = np.load(images, mmap_mode="r+")
    arr[:] = 0                                                  # edit the run in place
    arr.flush()
    del arr
    ingest_manifest(csv, tmp_path / "r3", OPTS)
    np.testing.assert_array_equal(RunDir(tmp_path / "r3").read_array("images"), first)
    entry = next((default_cache_dir() / "ingest").iterdir())
    assert not os.access(entry / "images.npy", os.W_OK) or os.geteuid() == 0
    # an entry changed behind the cache's back is not served
    os.chmod(entry / "images.npy", 0o644)
    with open(entry / "images.npy", "r+b") as fh:
        fh.seek(-4, os.SEEK_END)
        fh.write(b"\xff\xff\xff\xff")
    ingest_manifest(csv, tmp_path / "r4", OPTS)
    assert not RunDir(tmp_path / "r4").read_run_json()["ingest"]["cache_hit"]
    np.testing.assert_array_equal(RunDir(tmp_path / "r4").read_array("images"), first)


def _bomb_png(path: Path, side: int) -> None:
    """A valid PNG header announcing side x side RGB pixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_devices_pipes_and_bombs_are_refused_quickly(tmp_path: Path) -> None:
    csv = _pngs(tmp_path / "a")
    fifo = tmp_path / "a" / "pipe.png"
    os.mkfifo(fifo)
    _bomb_png(tmp_path / "a" / "bomb.png", 13000)
    m = pd.read_csv(csv)
    extra = pd.DataFrame({"path": ["/dev/zero", str(fifo), "bomb.png", str(tmp_path / "a")],
                          "label": ["neg", "pos", "neg", "pos"], "patient_id": ["X1", "X2", "X3", "X4"]})
    pd.concat([m, extra]).to_csv(csv, index=False)
    t0 = time.perf_counter()
    summary = ingest_manifest(csv, tmp_path / "run", OPTS)
    assert time.perf_counter() - t0 < 60  # a hang would never return
    assert summary.n_accepted == 8 and summary.n_refused == 4
    q = RunDir(tmp_path / "run").read_quarantine().set_index("source")["reason"]
    assert "is not a regular file (a character device)" in q["/dev/zero"]
    assert "is not a regular file (a named pipe (FIFO))" in q[str(fifo)]
    assert "above the limit of 1,024 MiB per image" in q["bomb.png"]
    assert "1,934 MiB" in q["bomb.png"]
    assert "is a directory" in q[str(tmp_path / "a")]
