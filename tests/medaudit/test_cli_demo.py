"""``medaudit demo-data`` and ``medaudit demo`` end to end on a tiny configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.rundir import RunDir
from ingest.demo import DemoConfig
from medaudit.cli import main
from medaudit.commands.demo import ensure_demo_data


def test_demo_data_writes_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo-data", "--out", str(tmp_path / "d"), "--n-patients", "40", "--dicom-size", "48"])
    assert code == 0
    assert (tmp_path / "d" / "labels.csv").exists() and (tmp_path / "d" / "ground_truth.json").exists()
    assert "planted problems" in capsys.readouterr().out


def test_ensure_demo_data_reuses_then_replaces(tmp_path: Path) -> None:
    cfg = DemoConfig(n_patients=30, image_size=32)
    ensure_demo_data(tmp_path / "d", cfg)
    stamp = (tmp_path / "d" / "labels.csv").stat().st_mtime_ns
    ensure_demo_data(tmp_path / "d", cfg)
    assert (tmp_path / "d" / "labels.csv").stat().st_mtime_ns == stamp
    ensure_demo_data(tmp_path / "d", DemoConfig(n_patients=31, image_size=32))
    assert json.loads((tmp_path / "d" / "ground_truth.json").read_text())["config"]["n_patients"] == 31
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("keep")
    with pytest.raises(ValueError, match="not empty"):
        ensure_demo_data(tmp_path / "other", cfg)


def test_demo_runs_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["-q", "demo", "--out", str(out), "--data-dir", str(tmp_path / "data"),
                 "--n-patients", "80", "--dicom-size", "48", "--image-size", "32",
                 "--model", "test_resnet", "--folds", "3", "--epochs", "2"])
    assert code == 0
    run = RunDir(out)
    n = run.n_samples()
    assert run.read_array("oof/pred_probs").shape == (n, 2)
    findings = run.read_json("findings.json")
    assert {f["check"] for f in findings} >= {"label_issues", "duplicates_and_leakage"}
    text = capsys.readouterr().out
    assert "run directory:" in text and "findings" in text


def test_demo_defaults_differ_from_train_only_where_documented() -> None:
    from medaudit.cli import build_parser
    from medaudit.commands.demo import DEMO_EPOCHS, DEMO_MIXUP, DEMO_MODEL
    from training import TrainConfig

    parser = build_parser()
    demo = parser.parse_args(["demo"])
    train = parser.parse_args(["train", "runs/x"])
    assert (demo.model, demo.epochs, demo.mixup) == (DEMO_MODEL, DEMO_EPOCHS, DEMO_MIXUP)
    assert (train.model, train.epochs, train.mixup) == (
        TrainConfig.model, TrainConfig.epochs, TrainConfig.mixup)
    assert demo.keep_selected == train.keep_selected == TrainConfig.keep_selected
    assert demo.jobs == train.jobs == TrainConfig.jobs
    assert parser.parse_args(["demo", "--epochs", "3"]).epochs == 3
    assert parser.parse_args(["demo", "--mixup", "0.3"]).mixup == 0.3


def test_no_shortcuts_flag_reaches_the_generator(tmp_path: Path) -> None:
    from medaudit.cli import build_parser
    from medaudit.commands.demo import _demo_config

    parser = build_parser()
    assert _demo_config(parser.parse_args(["demo"])).shortcuts is True
    cfg = _demo_config(parser.parse_args(["demo-data", "--out", "x", "--no-shortcuts",
                                          "--n-patients", "40", "--dicom-size", "32"]))
    assert cfg.shortcuts is False
    ensure_demo_data(tmp_path / "d", cfg)
    truth = json.loads((tmp_path / "d" / "ground_truth.json").read_text())
    assert truth["config"]["shortcuts"] is False and truth["shortcuts"]["planted"] is False
