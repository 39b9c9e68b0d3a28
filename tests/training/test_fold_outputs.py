"""A fold's files: round trip, the resume marker, and folds of an older format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audit.rundir import RunDir
from training import TrainConfig
from training.fold_outputs import (
    DONE,
    FOLD_FORMAT,
    FoldOutputs,
    FoldResult,
    ScoredRows,
    fold_dir,
    fold_is_done,
    fold_marker,
    load_fold_outputs,
    load_fold_result,
    write_fold_outputs,
)

CONFIG = TrainConfig(model="test_resnet", folds=3, quiet=True)


def _scored(rows: list[int], k: int = 2, d: int = 4, seed: int = 0) -> ScoredRows:
    rng = np.random.default_rng(seed)
    m = len(rows)
    logits = rng.normal(size=(m, k)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return ScoredRows(rows=np.array(rows, np.int64), probs=probs, logits=logits,
                      embeddings=rng.normal(size=(m, d)).astype(np.float32),
                      masked={"border_only": probs[:, ::-1].copy()})


def _result(fold: int = 1) -> FoldResult:
    return FoldResult(fold=fold, auc=0.8, in_sample_auc=float("nan"), inner_val_auc=0.7,
                      best_epoch=3, epochs_run=5, n_train=10, n_inner_val=4, n_oof=3,
                      n_holdout=2, seconds=1.0, train_seconds=0.5, train_images=50)


def _outputs(oof: list[int], holdout: list[int], fitted: list[int] = (1, 2, 4)) -> FoldOutputs:  # type: ignore[assignment]
    ins = _scored(list(fitted), seed=2)
    return FoldOutputs(oof=_scored(oof), holdout=_scored(holdout, seed=1),
                       in_sample_rows=ins.rows, in_sample_probs=ins.probs)


def _write(run: RunDir, outputs: FoldOutputs) -> None:
    write_fold_outputs(run, 1, outputs, history={"fold": 1}, result=_result(),
                       marker=fold_marker(CONFIG, "fp"))


def test_outputs_round_trip_both_row_sets(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    outputs = _outputs([0, 3, 5], [7, 8])
    _write(run, outputs)
    assert fold_is_done(run, 1, CONFIG, "fp")
    assert not fold_is_done(run, 1, CONFIG, "other data")
    assert not fold_is_done(run, 1, CONFIG.replace(lr=0.5), "fp")
    back = load_fold_outputs(run, 1, ("border_only",))
    for part in ("oof", "holdout"):
        want, got = getattr(outputs, part), getattr(back, part)
        for name in ("rows", "probs", "logits", "embeddings"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        np.testing.assert_array_equal(got.masked["border_only"], want.masked["border_only"])
    np.testing.assert_array_equal(back.in_sample_rows, outputs.in_sample_rows)
    np.testing.assert_array_equal(back.in_sample_probs, outputs.in_sample_probs)
    result, history = load_fold_result(run, 1)
    assert result.reused and result.n_oof == 3 and np.isnan(result.in_sample_auc)
    assert history == {"fold": 1}
    marker = json.loads((fold_dir(run, 1) / DONE).read_text())
    assert marker["format"] == FOLD_FORMAT and marker["result"]["n_oof"] == 3


def test_an_unfinished_fold_is_not_read(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert not fold_is_done(run, 0, CONFIG, "fp")
    with pytest.raises(FileNotFoundError, match="has not finished"):
        load_fold_outputs(run, 0, ())


def test_a_fold_of_the_older_format_is_retrained_not_misread(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    d = fold_dir(run, 1)
    d.mkdir(parents=True)
    # format 1: unprefixed out-of-fold arrays, `n_heldout`, no `format` key in the marker
    for name in ("rows", "probs", "logits", "embeddings", "masked_border_only"):
        np.save(d / f"{name}.npy", np.zeros(3))
    (d / "history.json").write_text("{}")
    old = {"config_hash": CONFIG.config_hash(), "data_fingerprint": "fp",
           "result": {**_result().to_dict(), "n_heldout": 3}}
    old["result"].pop("n_oof")
    (d / DONE).write_text(json.dumps(old))

    assert not fold_is_done(run, 1, CONFIG, "fp")  # so train_run retrains it
    with pytest.raises(ValueError, match="fold-output format 1"):
        load_fold_outputs(run, 1, ())
    with pytest.raises(ValueError, match="fold-output format 1"):
        load_fold_result(run, 1)

    _write(run, _outputs([0, 3, 5], []))
    assert fold_is_done(run, 1, CONFIG, "fp")
    assert not (d / "rows.npy").exists() and not (d / "masked_border_only.npy").exists()
    assert load_fold_outputs(run, 1, ("border_only",)).holdout.probs.shape == (0, 2)
