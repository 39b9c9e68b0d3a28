"""``medaudit train`` names its flags where the training library names parameters."""

from __future__ import annotations

import logging

import pytest

from audit.rundir import RunDir
from medaudit.cli import main
from medaudit.commands.train import flag_words, reword_for_cli

TINY = ["--model", "test_resnet", "--folds", "3", "--epochs", "1", "--batch-size", "32"]


@pytest.mark.parametrize(
    ("library", "cli"),
    [
        ("lower TrainConfig.lr, or use precision='fp32'", "lower --lr, or use --precision fp32"),
        ("use device='cpu' or device='auto'", "use --device cpu or --device auto"),
        ("Use fewer folds (folds=2) or add patients", "Use fewer folds (--folds 2) or add patients"),
        ("train without a holdout split (holdout_split=None)", "train without a holdout split (no --holdout-split)"),
        ("TrainConfig.models_per_fold=2 needs mode='finetune'", "--models-per-fold 2 needs --mode finetune"),
        ("Set TrainConfig.pretrained_weights to a file", "Set --pretrained-weights FILE to a file"),
        ("TrainConfig.image_size must be >= 8", "--train-image-size S must be >= 8"),
        ("keep_selected=False keeps one model", "--no-keep-selected keeps one model"),
        # parameters without a flag, and other names, stay as they are
        ("TrainConfig.inner_val_fraction must be > 0", "TrainConfig.inner_val_fraction must be > 0"),
        ("config.mode is 'x'; n_lr=3", "config.mode is 'x'; n_lr=3"),
    ],
)
def test_reword_for_cli(library: str, cli: str) -> None:
    assert reword_for_cli(library) == cli


def test_errors_and_log_records_leaving_the_block_are_reworded(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match=r"^use --precision fp32$"), flag_words():
        raise ValueError("use precision='fp32'")
    assert caplog.handler in logging.getLogger().handlers  # pytest's handler, on the root logger
    with caplog.at_level(logging.WARNING), flag_words():
        logging.getLogger("training.device").warning("consider %s", "precision='fp32'")
        logging.getLogger("audit").warning("precision='fp32' stays")
    assert [r.getMessage() for r in caplog.records] == ["consider --precision fp32",
                                                         "precision='fp32' stays"]


def test_a_bad_option_is_reported_with_its_flag(
    tiny_run: RunDir, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tiny_run.path), *TINY, "--precision", "fp16", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--precision bf16" in err and "precision='" not in err
    assert main(["train", str(tiny_run.path), *TINY, "--folds", "1"]) == 2
    assert "--folds must be >= 2; got 1" in capsys.readouterr().err
