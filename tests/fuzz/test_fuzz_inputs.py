"""Property-based fuzzing of every input path through the CLI (hypothesis).

For generated manifests (random columns, encodings, separators, values, paths),
DICOM label tables, prediction tables, TOML configs and DICOM files with mutated
headers (tags removed, values and VRs swapped, pixel data truncated), the command
line must

* never fail with a traceback (``main`` returns 0 or 2; it only raises on a bug),
* account for every refused input (``quarantine.csv`` or one error line, exit 2),
* never modify an input file.

``MEDAUDIT_FUZZ_EXAMPLES`` raises the number of generated cases per test (default
20, enough for ``make test``; the reliability issue's note reports a long run).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.data import get_testdata_file

from medaudit.cli import main

EXAMPLES = int(os.environ.get("MEDAUDIT_FUZZ_EXAMPLES", "20"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                derandomize="MEDAUDIT_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
KEY = "fuzz-key-0123456789abcdef0123456789abcdef"
#: Bundled with pydicom (never downloaded).
DICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "rtplan.dcm"]


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)  # an exception here is a bug: the test fails with its traceback
    err = capsys.readouterr().err
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("medaudit ")]
        assert len(lines) == 1 and "Traceback" not in err, err
    return code, err


def _check_ingest_outcome(code: int, out: Path, n_inputs: int | None) -> None:
    if code != 0:
        return
    manifest = pd.read_parquet(out / "manifest.parquet")
    quarantine = pd.read_csv(out / "quarantine.csv", dtype=str, keep_default_na=False)
    assert (quarantine["reason"].str.len() > 0).all()
    assert not quarantine["reason"].str.contains("\n").any()
    if n_inputs is not None:
        assert len(manifest) + len(quarantine) == n_inputs


# ----------------------------------------------------------------------------- manifests
_COLUMN = st.sampled_from(["site", "scanner", "sex", "age", "view", "split", "patient_id",
                           "study_id", "label_r1", "PatientName", "exam_date", "notes", "Ünïcode",
                           "", "label_name", " path "])
_LABEL = st.sampled_from(["neg", "pos", "0", "1", "7", "", "NEG", "maybe", "1.0", "-1"])
_PATH = st.sampled_from(["img0.png", "img1.png", "img2.png", "img3.png", "missing.png", "/dev/zero",
                         "sub", "bad.png", "", "../outside.png", "img0.png"])
_VALUE = st.one_of(st.text(max_size=8), st.sampled_from(["", "45", "F", "200", "nan", "x,y", '"q"']))


def _write_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((10, 10)) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n-garbage")
    (folder / "sub").mkdir()


@FUZZ
@given(rows=st.lists(st.tuples(_PATH, _LABEL, st.lists(_VALUE, min_size=3, max_size=3)),
                     min_size=0, max_size=12),
       extra=st.lists(_COLUMN, min_size=0, max_size=3, unique=True),
       sep=st.sampled_from([",", ";", "\t"]),
       encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
       header=st.booleans())
def test_fuzz_manifest(rows, extra, sep, encoding, header, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        _write_images(data)
        cols = ["path", "label", *extra] if header else ["label", *extra]
        table = pd.DataFrame([[p, y, *v][: len(cols)] + [""] * max(0, len(cols) - 2 - len(v))
                              for p, y, v in rows], columns=cols) if rows else pd.DataFrame(columns=cols)
        buf = io.StringIO()
        table.to_csv(buf, sep=sep, index=False)
        try:
            (data / "m.csv").write_bytes(buf.getvalue().encode(encoding))
        except UnicodeEncodeError:
            (data / "m.csv").write_bytes(buf.getvalue().encode("utf-8"))
        before = _digests(data)
        code, _ = _run_cli(["ingest", "--manifest", str(data / "m.csv"), "--out", str(tmp / "run"),
                            "--secret-file", str(_key(tmp)), "--image-size", "8", "--no-cache"],
                           capsys)
        assert _digests(data) == before
        _check_ingest_outcome(code, tmp / "run", None)


def _key(tmp: Path) -> Path:
    p = tmp / "k.key"
    if not p.exists():
        p.write_text(KEY)
        os.chmod(p, 0o600)
    return p


# ----------------------------------------------------------------------------- DICOM
def _mutate(ds: pydicom.Dataset, rng: np.random.Generator, kind: str) -> None:
    tags = [e.tag for e in ds if e.tag != 0x7FE00010]
    if kind == "remove" and tags:
        for t in rng.choice(len(tags), size=min(len(tags), int(rng.integers(1, 6))), replace=False):
            del ds[tags[int(t)]]
    elif kind == "value":
        for kw, val in (("Rows", int(rng.choice([0, 1, 70000, 65535]))),
                        ("BitsStored", int(rng.choice([0, 1, 17, 64]))),
                        ("PhotometricInterpretation", str(rng.choice(["PALETTE COLOR", "XYZ", ""]))),
                        ("WindowWidth", str(rng.choice(["0", "-5", "abc"]))),
                        ("NumberOfFrames", str(rng.choice(["0", "-1", "x", "1000"]))),
                        ("SamplesPerPixel", int(rng.choice([0, 3, 4])))):
            if rng.random() < 0.5:
                try:
                    setattr(ds, kw, val)
                except Exception:  # pydicom refuses some values outright: that mutation is moot
                    pass
    elif kind == "vr" and tags:
        t = tags[int(rng.integers(len(tags)))]
        ds[t].VR = str(rng.choice(["UN", "OB", "LO", "US", "DS"]))


@FUZZ
@given(picks=st.lists(st.tuples(st.sampled_from(DICOM_FILES),
                                st.sampled_from(["none", "remove", "value", "vr", "truncate"]),
                                st.integers(0, 2**31 - 1)), min_size=1, max_size=5))
def test_fuzz_dicom_headers(picks, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dcm = tmp / "dicom"
        dcm.mkdir()
        labels = []
        for i, (name, kind, seed) in enumerate(picks):
            rng = np.random.default_rng(seed)
            target = dcm / f"f{i}.dcm"
            if kind == "truncate":
                raw = Path(get_testdata_file(name)).read_bytes()
                target.write_bytes(raw[: int(len(raw) * rng.uniform(0.05, 0.98))])
            else:
                ds = pydicom.dcmread(get_testdata_file(name))
                if kind != "none":
                    _mutate(ds, rng, kind)
                try:
                    ds.save_as(target, enforce_file_format=False)
                except Exception:  # the mutation made it unwritable: write the original
                    shutil.copy(get_testdata_file(name), target)
            labels.append({"path": f"f{i}.dcm", "label": ["neg", "pos"][i % 2]})
        labels.append({"path": "absent.dcm", "label": "pos"})
        pd.DataFrame(labels).to_csv(tmp / "labels.csv", index=False)
        before = _digests(tmp)
        code, _ = _run_cli(["ingest", "--dicom-dir", str(dcm), "--labels", str(tmp / "labels.csv"),
                            "--classes", "neg,pos", "--out", str(tmp / "run"), "--image-size", "8",
                            "--secret-file", str(_key(tmp)), "--no-cache"], capsys)
        assert {k: v for k, v in _digests(tmp).items() if not k.startswith(("run/", "k.key"))} == \
            {k: v for k, v in before.items() if not k.startswith("k.key")}
        _check_ingest_outcome(code, tmp / "run", len(labels))


# ----------------------------------------------------------------------------- predictions
_PROB = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                  st.sampled_from(["abc", "", "0.5", "1e-3", "  0.2 "]))


@FUZZ
@given(rows=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "", "a "]),
                               st.sampled_from(["0", "1", "neg", "pos", "2", ""]), _PROB),
                     min_size=0, max_size=10),
       pred_ids=st.lists(st.sampled_from(["a", "b", "c", "d", "z"]), max_size=6),
       class_cols=st.sampled_from([("0", "1"), ("neg", "pos"), ("0",), ("1", "2"), ("neg", "x")]))
def test_fuzz_predictions(rows, pred_ids, class_cols, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pd.DataFrame([{"sample_id": s, "label": y} for s, y, _ in rows],
                     columns=["sample_id", "label"]).to_csv(tmp / "labels.csv", index=False)
        probs = [p for _, _, p in rows] or [0.5]
        pd.DataFrame({"sample_id": pred_ids, **{c: [probs[i % len(probs)] for i in range(len(pred_ids))]
                                                 for c in class_cols}}).to_csv(tmp / "p.csv", index=False)
        key = _key(tmp)
        before = _digests(tmp)
        _run_cli(["audit-predictions", "--labels", str(tmp / "labels.csv"), "--pred-probs",
                  str(tmp / "p.csv"), "--out", str(tmp / "run"), "--secret-file", str(key),
                  "--checks", "label_issues,class_balance_and_size"], capsys)
        assert {k: v for k, v in _digests(tmp).items() if not k.startswith("run/")} == before


# ----------------------------------------------------------------------------- TOML
_TOML_VALUE = st.sampled_from(['1', '"x"', 'true', '[1, 2]', '0.5', '-3', '"warning"', '{a = 1}',
                               'nan', '1e999', '"critical"'])


@FUZZ
@given(sections=st.lists(st.tuples(
    st.sampled_from(["label_issues", "outliers", "class_balance_and_size", "nope", "label issues"]),
    st.lists(st.tuples(st.sampled_from(["max_listed", "seed", "n_boot", "warn_noise_rate", "x",
                                        "ci_level", "min_subgroup"]), _TOML_VALUE), max_size=3)),
    max_size=3),
    garbage=st.sampled_from(["", "[[[", "key = ", "\x00"]))
def test_fuzz_toml_config(sections, garbage, tmp_path_factory, capsys) -> None:
    run = _shared_run(tmp_path_factory)
    with tempfile.TemporaryDirectory() as tmp:
        text = "\n".join(f"[{name}]\n" + "\n".join(f"{k} = {v}" for k, v in items)
                         for name, items in sections) + "\n" + garbage
        cfg = Path(tmp) / "audit.toml"
        cfg.write_text(text, encoding="utf-8")
        _run_cli(["audit", str(run), "--config", str(cfg), "--checks",
                  "label_issues,class_balance_and_size"], capsys)


_RUN: dict[str, Path] = {}


def _shared_run(factory: pytest.TempPathFactory) -> Path:
    if "run" not in _RUN:
        from tests.conftest import build_tiny_run

        run = build_tiny_run(factory.mktemp("fuzz") / "run", n=40, size=8)
        y = run.read_manifest()["label"].to_numpy()
        p1 = np.clip(0.2 + 0.6 * y + np.random.default_rng(0).normal(0, 0.1, len(y)), 0.01, 0.99)
        run.write_array("oof/pred_probs", np.c_[1 - p1, p1].astype(np.float32))
        _RUN["run"] = run.path
    return _RUN["run"]
