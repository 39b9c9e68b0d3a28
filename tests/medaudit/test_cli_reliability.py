"""Hostile and broken inputs through the CLI: one line, exit 2, nothing lost (reliability issue)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit import registry as registry_module
from audit.check_spec import CheckSpec
from audit.registry import _build, get_check
from audit.rundir import RunDir
from medaudit.cli import (
    EXIT_AUDIT_INCOMPLETE,
    EXIT_BAD_INPUT,
    EXIT_FINDINGS_AT_FAIL_ON,
    EXIT_OK,
    main,
)

KEY = "0123456789abcdef0123456789abcdef"


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("medaudit ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def audited(tiny_run: RunDir) -> RunDir:
    y = tiny_run.read_manifest()["label"].to_numpy()
    rng = np.random.default_rng(0)
    p1 = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, len(y)), 0.01, 0.99)
    tiny_run.write_array("oof/pred_probs", np.c_[1 - p1, p1].astype(np.float32))
    return tiny_run


def test_rows_that_disagree_are_refused_before_any_check(audited: RunDir, capsys) -> None:
    imgs = np.load(audited.file("images"))
    np.save(audited.file("images"), imgs[:60])
    assert main(["audit", str(audited.path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "images.npy has 60 rows but manifest.parquet has 160: re-run medaudit ingest" in err
    assert "Traceback" not in err and not audited.has("findings.json")


def test_a_failing_check_makes_the_audit_incomplete(audited: RunDir, capsys,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx, config):  # type: ignore[no-untyped-def]
        raise RuntimeError("planted failure")

    real = get_check("class_balance_and_size")
    specs = _build([get_check("label_issues"),
                    CheckSpec(real.name, boom, real.config_cls, real.requires, real.description)])
    monkeypatch.setattr(registry_module, "registry", lambda: specs)
    assert main(["audit", str(audited.path)]) == EXIT_AUDIT_INCOMPLETE
    out = capsys.readouterr().out
    assert "Check class_balance_and_size could not run" in out and "audit incomplete" in out
    info = audited.read_run_json()["audit"]
    assert info["complete"] is False and info["errors"][0]["check"] == "class_balance_and_size"


def test_fail_on_gates_on_severity(audited: RunDir) -> None:
    assert main(["audit", str(audited.path), "--checks", "label_issues"]) == EXIT_OK
    findings = audited.read_json("findings.json")
    worst = min(findings, key=lambda f: ["critical", "warning", "info", "pass"].index(f["severity"]))
    code = main(["audit", str(audited.path), "--checks", "label_issues", "--fail-on", "warning"])
    expected = EXIT_FINDINGS_AT_FAIL_ON if worst["severity"] in ("critical", "warning") else EXIT_OK
    assert code == expected


def test_quiet_is_accepted_after_the_subcommand(audited: RunDir, capsys) -> None:
    assert main(["audit", str(audited.path), "--checks", "label_issues", "-q"]) == EXIT_OK


def test_weak_and_exposed_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from ingest.pseudonymize import load_or_create_secret

    monkeypatch.setenv("MEDAUDIT_SECRET", "x")
    with pytest.raises(ValueError, match="1 character"):
        load_or_create_secret()
    monkeypatch.delenv("MEDAUDIT_SECRET")
    short = tmp_path / "short.key"
    short.write_text("abc")
    os.chmod(short, 0o600)
    with pytest.raises(ValueError, match="at least 32 characters"):
        load_or_create_secret(short)
    exposed = tmp_path / "exposed.key"
    exposed.write_text(KEY)
    os.chmod(exposed, 0o666)
    with pytest.warns(UserWarning, match="chmod 600"):
        assert load_or_create_secret(exposed) == KEY.encode()
    with pytest.raises(ValueError, match="not a regular file"):
        load_or_create_secret(tmp_path)


def _pngs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": ["neg", "pos"][i % 2]})
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)
    return folder / "m.csv"


@pytest.mark.parametrize("case", ["npz_not_zip", "out_is_a_file", "secret_is_a_dir",
                                  "semicolon_csv", "manifest_is_a_dir", "conflicting_keys",
                                  "binary_toml", "corrupt_run_json"])
def test_bad_input_is_one_line_with_exit_2(case: str, tmp_path: Path, capsys) -> None:
    csv = _pngs(tmp_path / "data")
    key = tmp_path / "k.key"
    key.write_text(KEY)
    os.chmod(key, 0o600)
    base = ["--secret-file", str(key), "--image-size", "8"]
    if case == "npz_not_zip":
        (tmp_path / "x.npz").write_bytes(b"not a zip at all")
        argv, expect = ["ingest", "--npz", str(tmp_path / "x.npz"), "--out", str(tmp_path / "r"), *base], \
            "not a readable .npz archive"
    elif case == "out_is_a_file":
        (tmp_path / "r").write_text("x")
        argv, expect = ["ingest", "--manifest", str(csv), "--out", str(tmp_path / "r"), *base], \
            "is a file, not a folder"
    elif case == "secret_is_a_dir":
        argv, expect = ["ingest", "--manifest", str(csv), "--out", str(tmp_path / "r"),
                        "--secret-file", str(tmp_path), "--image-size", "8"], "not a regular file"
    elif case == "semicolon_csv":
        (tmp_path / "s.csv").write_text("path;label\n0.png;neg\n1.png;pos\n")
        argv, expect = ["ingest", "--manifest", str(tmp_path / "s.csv"), "--out", str(tmp_path / "r"),
                        *base], "seems to use a semicolon as separator"
    elif case == "manifest_is_a_dir":
        argv, expect = ["ingest", "--manifest", str(tmp_path / "data"), "--out", str(tmp_path / "r"),
                        *base], "is a directory"
    elif case == "conflicting_keys":
        (tmp_path / "dcm").mkdir()
        (tmp_path / "l.csv").write_text("path,sop_instance_uid,label\na.dcm,1.2.3,neg\n")
        argv, expect = ["ingest", "--dicom-dir", str(tmp_path / "dcm"), "--labels", str(tmp_path / "l.csv"),
                        "--out", str(tmp_path / "r"), *base], "several key columns"
    elif case == "binary_toml":
        (tmp_path / "c.toml").write_bytes(b"\xff\xfe\x00binary")
        assert main(["ingest", "--manifest", str(csv), "--out", str(tmp_path / "r"), *base]) == 0
        capsys.readouterr()
        argv, expect = ["audit", str(tmp_path / "r"), "--config", str(tmp_path / "c.toml")], \
            f"audit config {tmp_path / 'c.toml'} is not UTF-8 text"
    else:
        assert main(["ingest", "--manifest", str(csv), "--out", str(tmp_path / "r"), *base]) == 0
        capsys.readouterr()
        (tmp_path / "r" / "run.json").write_text('{"classes": ["neg", "pos"')
        argv, expect = ["audit", str(tmp_path / "r")], f"{tmp_path / 'r' / 'run.json'} is not valid JSON"
    assert main(argv) == EXIT_BAD_INPUT
    line = _one_line_error(capsys.readouterr().err)
    assert expect in line, line
    if case == "out_is_a_file":
        assert (tmp_path / "r").read_text() == "x"


def test_inputs_are_never_modified(tmp_path: Path) -> None:
    csv = _pngs(tmp_path / "data")
    before = {p: p.read_bytes() for p in (tmp_path / "data").iterdir()}
    key = tmp_path / "k.key"
    key.write_text(KEY)
    os.chmod(key, 0o600)
    assert main(["ingest", "--manifest", str(csv), "--out", str(tmp_path / "r"), "--secret-file",
                 str(key), "--image-size", "8"]) == 0
    assert {p: p.read_bytes() for p in (tmp_path / "data").iterdir()} == before
    assert json.loads((tmp_path / "r" / "run.json").read_text())["classes"] == ["neg", "pos"]


TINY_TRAIN = ["--model", "test_resnet", "--folds", "3", "--epochs", "1", "--batch-size", "32"]


def _published(run: RunDir) -> dict[str, bytes]:
    names = [p for p in sorted(run.path.rglob("*")) if p.is_file()
             and p.relative_to(run.path).parts[0] in ("oof", "train")]
    out = {p.relative_to(run.path).as_posix(): p.read_bytes() for p in names}
    out["run.json:train"] = json.dumps(run.read_run_json().get("train", {}).get("config")).encode()
    return out


def test_a_failed_or_interrupted_retrain_keeps_the_published_run(
    tiny_run: RunDir, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from training import fold_training

    assert main(["train", str(tiny_run.path), *TINY_TRAIN]) == EXIT_OK
    assert main(["audit", str(tiny_run.path), "--checks", "label_issues"]) == EXIT_OK
    before = _published(tiny_run)
    findings = tiny_run.read_json("findings.json")
    capsys.readouterr()
    # a typo in the model name: refused before anything is written
    assert main(["train", str(tiny_run.path), *TINY_TRAIN, "--seed", "7", "--model",
                 "resnet10tt"]) == EXIT_BAD_INPUT
    assert "did you mean 'resnet10t'" in capsys.readouterr().err
    assert _published(tiny_run) == before
    # a retrain with another seed killed after its first fold
    real = fold_training._train_fold

    def killed_after_fold_0(ctx, fold, config, *, position, member_map=None):  # type: ignore[no-untyped-def]
        if fold == 1:
            raise KeyboardInterrupt("kill")
        return real(ctx, fold, config, position=position, member_map=member_map)

    monkeypatch.setattr(fold_training, "_train_fold", killed_after_fold_0)
    assert main(["train", str(tiny_run.path), *TINY_TRAIN, "--seed", "7"]) == 130
    assert _published(tiny_run) == before
    assert tiny_run.read_json("findings.json") == findings     # the audit of seed 0 stands
    monkeypatch.setattr(fold_training, "_train_fold", real)
    assert main(["train", str(tiny_run.path), *TINY_TRAIN, "--seed", "7"]) == EXIT_OK
    assert _published(tiny_run) != before
    assert not tiny_run.has("findings.json")                   # stale: made from seed 0's outputs
    assert "audit" not in tiny_run.read_run_json()
    assert tiny_run.read_run_json()["train"]["config"]["seed"] == 7


def test_a_second_writer_fails_at_once(tiny_run: RunDir, capsys) -> None:
    import subprocess
    import sys

    code = ("import sys, time\nfrom audit.transaction import writer_lock\n"
            "with writer_lock(sys.argv[1], 'medaudit train'):\n"
            "    print('locked', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tiny_run.path)], text=True,
                            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert main(["train", str(tiny_run.path), *TINY_TRAIN]) == EXIT_BAD_INPUT
        line = _one_line_error(capsys.readouterr().err)
        assert f"in use by another medaudit process (medaudit train, pid {proc.pid}" in line
        assert not tiny_run.has("oof/folds")
    finally:
        proc.kill()
        proc.wait()
