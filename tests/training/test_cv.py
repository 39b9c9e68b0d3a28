"""Whole-run cross-validation: artifacts, row order, determinism, resume, holdout, learning."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import training.fold_training as fold_training
from audit.metrics import auc_score
from audit.rundir import RunDir
from training import TrainConfig, train_run
from training.fold_outputs import load_fold_outputs
from training.splits import assign_folds


def test_train_run_writes_the_contract_artifacts_and_learns(
    tiny_run: RunDir, fast_config: TrainConfig
) -> None:
    summary = train_run(tiny_run, fast_config)
    n = tiny_run.n_samples()
    manifest = tiny_run.read_manifest()
    probs = tiny_run.read_array("oof/pred_probs")  # validates row count against the manifest
    logits = tiny_run.read_array("oof/logits")
    emb = tiny_run.read_array("oof/embeddings")
    folds = tiny_run.read_array("oof/folds")
    assert probs.shape == (n, 2) and probs.dtype == np.float32
    assert logits.shape == (n, 2) and emb.shape[0] == n and emb.ndim == 2
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), probs, atol=1e-5)
    np.testing.assert_array_equal(folds, assign_folds(manifest, folds=3, seed=0))
    # row order: each row's probability comes from the fold that held it out
    for k in range(3):
        oof = load_fold_outputs(tiny_run, k, ()).oof
        np.testing.assert_array_equal(probs[oof.rows], oof.probs)
        assert (tiny_run.path / "train" / f"fold_{k}.pt").is_file()

    assert tiny_run.masked_variants() == ["border_only", "center_masked", "corners_masked"]
    for v in tiny_run.masked_variants():
        masked = tiny_run.read_array(f"oof/masked/{v}")
        assert masked.shape == probs.shape and not np.allclose(masked, probs)

    # in-sample: fold k's prediction on the rows it was fitted on, NaN on its own OOF rows
    ins = tiny_run.read_array("train/in_sample_probs")
    assert ins.shape == (n, 3, 2)
    for k in range(3):
        fitted = ~np.isnan(ins[:, k, 0])
        # the rows the kept model was fitted on: the fold's training rows (inner split
        # included after a refit), never its own out-of-fold rows
        assert not fitted[folds == k].any() and fitted[folds != k].mean() > 0.5
        np.testing.assert_array_equal(np.flatnonzero(fitted),
                                      load_fold_outputs(tiny_run, k, ()).in_sample_rows)
        np.testing.assert_allclose(ins[fitted, k].sum(1), 1, atol=1e-5)

    hist = tiny_run.read_json("train/history.json")
    assert [f["fold"] for f in hist["folds"]] == [0, 1, 2]
    assert all(f["in_sample_auc"] is not None for f in hist["folds"])

    rec = tiny_run.read_run_json()["train"]
    assert rec["config"]["model"] == "test_resnet"
    assert rec["versions"]["torch"] and rec["versions"]["timm"]
    assert len(rec["fold_auc"]) == 3 and rec["seeds"]["seed"] == 0
    lo, hi = rec["oof_auc"]["ci_low"], rec["oof_auc"]["ci_high"]
    assert lo <= rec["oof_auc"]["estimate"] <= hi and rec["oof_auc"]["method"]
    assert rec["holdout"] is None
    assert tiny_run.read_run_json()["classes"] == ["class_0", "class_1"]  # ingest keys kept

    # learning happens on the planted signal
    assert summary.oof_auc.estimate > 0.8
    assert auc_score(manifest["label"].to_numpy(), probs) == pytest.approx(summary.oof_auc.estimate)
    assert "OOF AUC" in summary.text and "fold AUC" in summary.text
    # 3 epochs: the budget-aware defaults keep the selected model, no refit
    assert rec["config"]["refit"] is False and rec["auto_fields"]["refit"] is False
    assert "refitted on all training rows" not in summary.text


def test_two_runs_give_identical_predictions(
    make_tiny_run: Callable[..., RunDir], fast_config: TrainConfig
) -> None:
    cfg = fast_config.replace(epochs=1)
    a, b = make_tiny_run("a"), make_tiny_run("b")
    train_run(a, cfg)
    train_run(b, cfg)
    for name in ("oof/pred_probs", "oof/logits", "oof/embeddings", "oof/masked/border_only"):
        np.testing.assert_array_equal(a.read_array(name), b.read_array(name))


def test_resume_after_a_crash_skips_finished_folds_and_matches(
    make_tiny_run: Callable[..., RunDir], fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = fast_config.replace(epochs=1)
    reference = make_tiny_run("reference")
    train_run(reference, cfg)

    run = make_tiny_run("crashed")
    real = fold_training._train_fold
    calls: list[int] = []

    def crash_in_fold_1(ctx, fold, config, *, position, member_map=None):  # type: ignore[no-untyped-def]
        calls.append(fold)
        if fold == 1:
            raise KeyboardInterrupt("simulated kill during fold 1")
        return real(ctx, fold, config, position=position, member_map=member_map)

    monkeypatch.setattr(fold_training, "_train_fold", crash_in_fold_1)
    with pytest.raises(KeyboardInterrupt):
        train_run(run, cfg)
    assert calls == [0, 1]
    assert (run.path / ".work/train/fold_0/done").is_file()
    assert not (run.path / ".work/train/fold_1/done").exists()
    assert not run.has("oof/folds") and not (run.path / "train").exists()  # nothing published
    assert not run.has("oof/pred_probs")

    calls.clear()
    monkeypatch.setattr(fold_training, "_train_fold", lambda *a, **k: (calls.append(a[1]), real(*a, **k))[1])
    summary = train_run(run, cfg)
    assert calls == [1, 2]  # fold 0 was not retrained
    assert [f.reused for f in summary.folds] == [True, False, False]
    for name in ("oof/pred_probs", "oof/logits", "oof/embeddings", "oof/folds",
                 "oof/masked/center_masked"):
        np.testing.assert_array_equal(run.read_array(name), reference.read_array(name))


def test_holdout_rows_get_fold_minus_one_and_ensemble_scores(
    make_split_run: Callable[..., RunDir], fast_config: TrainConfig
) -> None:
    run = make_split_run(n_classes=3, n=180)
    cfg = fast_config.replace(epochs=1, holdout_split="test", masked_variants=("border_only",),
                              select_epochs=True, refit=True, keep_selected=True)
    summary = train_run(run, cfg)
    manifest = run.read_manifest()
    folds = run.read_array("oof/folds")
    hold = (manifest["split"] == "test").to_numpy()
    assert (folds[hold] == -1).all() and (folds[~hold] >= 0).all()
    probs = run.read_array("oof/pred_probs")
    assert probs.shape == (len(manifest), 3)
    ensemble = np.mean(
        [load_fold_outputs(run, k, ()).holdout.probs for k in range(3)], axis=0
    )
    np.testing.assert_allclose(probs[hold], ensemble, rtol=1e-6)
    assert run.masked_variants() == ["border_only"]
    rec = run.read_run_json()["train"]
    assert rec["holdout"]["split"] == "test" and rec["n_holdout_rows"] == int(hold.sum())
    assert rec["auc_definition"] == "macro one-vs-rest ROC AUC"
    assert summary.holdout_auc is not None and "holdout" in summary.text
    # keep_selected keeps the selected model beside its refit: two models per fold
    assert all(r.models == 2 for r in summary.folds)
    assert rec["holdout"]["scored_by"] == "mean of 3 folds' probabilities (2 model(s) per fold)"
    assert "ensemble of 3 folds x 2 models" in summary.text


def test_parallel_jobs_in_spawned_processes(tiny_run: RunDir, fast_config: TrainConfig) -> None:
    summary = train_run(tiny_run, fast_config.replace(epochs=1, folds=2, jobs=2,
                                                      masked_variants=()))
    assert len(summary.folds) == 2 and not any(f.reused for f in summary.folds)
    probs = tiny_run.read_array("oof/pred_probs")
    assert np.isfinite(probs).all()
    assert tiny_run.masked_variants() == []
