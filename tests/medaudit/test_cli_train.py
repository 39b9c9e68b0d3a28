"""``medaudit train`` on the command line."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from audit.rundir import RunDir
from medaudit.cli import main
from medaudit.commands.train import add_train_arguments, train_config_from_args
from training import TrainConfig

TINY = ["--model", "test_resnet", "--folds", "3", "--epochs", "1", "--batch-size", "32"]


def test_train_command_writes_artifacts_and_prints_summary(
    tiny_run: RunDir, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", str(tiny_run.path), *TINY, "--seed", "1", "--flips", "horizontal"])
    assert code == 0
    assert tiny_run.read_array("oof/pred_probs").shape == (tiny_run.n_samples(), 2)
    assert "OOF AUC" in capsys.readouterr().out
    cfg = tiny_run.read_run_json()["train"]["config"]
    assert cfg["seed"] == 1 and cfg["flips"] == "horizontal" and cfg["quiet"] is False


def test_quiet_train_prints_nothing(tiny_run: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "train", str(tiny_run.path), *TINY, "--precision", "fp32"]) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert tiny_run.read_run_json()["train"]["setup"]["precision"] == "fp32"


def test_pretrained_without_file_is_a_clear_error(
    tiny_run: RunDir, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tiny_run.path), *TINY, "--pretrained"]) == 2
    err = capsys.readouterr().err
    assert "never downloads" in err and "--pretrained-weights FILE" in err
    assert main(["train", str(tiny_run.path), *TINY, "--pretrained-weights", "imagenet"]) == 2
    assert "never downloads" in capsys.readouterr().err
    # a URL is named as a download, not reported as a missing file with its "//" collapsed
    url = "https://example.org/weights/resnet18.pt"
    assert main(["train", str(tiny_run.path), *TINY, "--pretrained-weights", url]) == 2
    err = capsys.readouterr().err
    assert "never downloads" in err and repr(url) in err and "does not exist" not in err
    assert not tiny_run.has("oof/pred_probs")


def test_missing_run_dir_is_a_clear_error(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["train", str(tmp_path / "nope"), *TINY]) == 2
    assert "medaudit ingest" in capsys.readouterr().err


def test_train_arguments_coexist_with_an_ingest_image_size() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image-size", type=int, default=64)  # the ingest cache size in `run`
    add_train_arguments(parser)
    args = parser.parse_args(["--image-size", "96", "--train-image-size", "48", "--jobs", "2"])
    cfg = train_config_from_args(args)
    assert args.image_size == 96 and cfg.image_size == 48 and cfg.jobs == 2

    plain = argparse.ArgumentParser()
    add_train_arguments(plain)
    cfg = train_config_from_args(plain.parse_args(["--image-size", "40", "--mode", "linear-probe"]))
    assert cfg.image_size == 40 and cfg.mode == "linear-probe" and not cfg.quiet
    assert np.isclose(cfg.lr, train_config_from_args(plain.parse_args([])).lr)
    assert train_config_from_args(plain.parse_args([])).refit is None  # auto: from --epochs
    assert train_config_from_args(plain.parse_args(["--no-refit"])).refit is False
    assert train_config_from_args(plain.parse_args(["--stem-pool", "drop"])).stem_pool == "drop"
    assert train_config_from_args(plain.parse_args([])).stem_pool == TrainConfig().stem_pool
    assert train_config_from_args(plain.parse_args(["--no-refit", "--refit"])).refit


def _cli_config(*argv: str) -> TrainConfig:
    """The ``TrainConfig`` that the training options ``argv`` give."""
    plain = argparse.ArgumentParser()
    add_train_arguments(plain)
    return train_config_from_args(plain.parse_args(list(argv)))


def test_ensemble_and_mixup_options_reach_the_config(
    tiny_run: RunDir, capsys: pytest.CaptureFixture[str]
) -> None:
    default = _cli_config()
    assert (default.mixup, default.keep_selected, default.models_per_fold) == (
        TrainConfig().mixup, TrainConfig().keep_selected, TrainConfig().models_per_fold)
    cfg = _cli_config("--mixup", "0", "--no-keep-selected", "--models-per-fold", "3")
    assert (cfg.mixup, cfg.keep_selected, cfg.models_per_fold) == (0.0, False, 3)
    assert main(["train", str(tiny_run.path), *TINY, "--models-per-fold", "0"]) == 2
    err = capsys.readouterr().err
    assert "--models-per-fold M must be >= 1" in err and "Traceback" not in err
    assert main(["train", str(tiny_run.path), *TINY, "--mode", "linear-probe",
                 "--models-per-fold", "2"]) == 2
    assert "needs --mode finetune" in capsys.readouterr().err


def test_every_budget_dependent_setting_has_a_flag(
    tiny_run: RunDir, capsys: pytest.CaptureFixture[str]
) -> None:
    """All the "auto" fields can be set from the command line (else they follow --epochs)."""
    from training.budget import AUTO_FIELDS

    assert all(getattr(_cli_config(), f) is None for f in AUTO_FIELDS)
    cfg = _cli_config("--epochs", "40", "--no-select-epochs", "--warmup-epochs", "10",
                      "--augment-probability", "0", "--ema-epochs", "0", "--mixup", "0")
    assert (cfg.select_epochs, cfg.warmup_epochs, cfg.augment_probability) == (False, 10.0, 0.0)
    # the bare loop's protocol at 40 epochs: one pass on all rows, no inner selection
    resolved = cfg.resolved(steps_per_epoch=20)
    assert resolved.select_epochs is False and resolved.refit is False  # nothing to refit
    assert resolved.keep_selected is False
    assert resolved.augment_probability == 0.0 and resolved.warmup_epochs == 10.0
    # a value out of range is one line naming the flag
    assert main(["train", str(tiny_run.path), *TINY, "--augment-probability", "2"]) == 2
    err = capsys.readouterr().err
    assert "augment-probability" in err and "Traceback" not in err
