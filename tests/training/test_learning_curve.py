"""``medaudit train --learning-curve``: patient-grouped fractions, train/learning_curve.json."""

from __future__ import annotations

import numpy as np
import pytest

from audit.engine import audit_run
from audit.rundir import RunDir
from medaudit.cli import main
from training import TrainConfig, train_run
from training.learning_curve import parse_fractions, subsample_rows

TINY = ["--model", "test_resnet", "--folds", "3", "--epochs", "1", "--batch-size", "32"]


def test_parse_fractions() -> None:
    assert parse_fractions("0.5,0.25") == (0.25, 0.5, 1.0)
    assert parse_fractions([1.0, 0.75]) == (0.75, 1.0)
    for bad in ("0,0.5", "1.5", "half", "1.0"):
        with pytest.raises(ValueError, match="fractions must be numbers in"):
            parse_fractions(bad)


def test_subsample_keeps_patients_whole_and_strata() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(200)], 2)
    labels = np.repeat(rng.integers(0, 2, 200), 2)
    rows = np.arange(400)
    for frac, want in ((0.25, 0.25), (0.5, 0.5), (0.75, 0.75)):
        sub = subsample_rows(rows, labels, groups, frac, seed=1)
        assert abs(len(sub) / 400 - want) < 0.03
        kept = set(groups[sub])
        assert all(g in kept for g in groups[np.isin(groups, list(kept))])  # whole patients
        assert abs(labels[sub].mean() - labels.mean()) < 0.05
    np.testing.assert_array_equal(subsample_rows(rows, labels, groups, 1.0, seed=0), rows)


def test_learning_curve_is_written_and_audited(
    tiny_run: RunDir, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", str(tiny_run.path), *TINY, "--learning-curve", "0.5,0.75"])
    assert code == 0
    assert "learning   mean fold AUC by training fraction" in capsys.readouterr().out
    curve = tiny_run.read_json("train/learning_curve.json")
    assert curve["fractions"] == [0.5, 0.75, 1.0] and curve["mode"] == "finetune"
    assert len(curve["points"]) == 9
    for fold in range(3):
        n = [p["n_train"] for p in curve["points"] if p["fold"] == fold]
        assert n == sorted(n) and n[0] < n[-1]
    full = {p["fold"]: p["auc"] for p in curve["points"] if p["fraction"] == 1.0}
    rec = tiny_run.read_run_json()["train"]
    assert [round(full[k], 4) for k in range(3)] == [round(a, 4) for a in rec["fold_auc"]]
    assert "train/learning_curve.json" in rec["artifacts"]  # checked by verify_run
    res = audit_run(
        tiny_run, checks=["overfitting"], config={"overfitting": {"n_boot": 50}}, write=False
    )
    assert any(f.title.startswith("Learning curve:") for f in res.findings)


def test_linear_probe_learning_curve(tiny_run: RunDir) -> None:
    cfg = TrainConfig(
        model="test_resnet", folds=3, mode="linear-probe", quiet=True, masked_variants=()
    )
    summary = train_run(tiny_run, cfg, learning_curve=(0.25, 0.5))
    curve = tiny_run.read_json("train/learning_curve.json")
    assert curve["mode"] == "linear-probe" and len(curve["points"]) == 9
    assert summary.record["learning_curve"]["fractions"] == [0.25, 0.5, 1.0]


def test_bad_fractions_exit_2_before_training(
    tiny_run: RunDir, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tiny_run.path), *TINY, "--learning-curve", "0.5,2"]) == 2
    assert "--learning-curve must be numbers in (0, 1]" in capsys.readouterr().err
    assert not tiny_run.has("oof/pred_probs")
