"""``mode='linear-probe'``: frozen embeddings, one logistic regression per fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from audit.rundir import RunDir
from training import TrainConfig, create_model, train_run
from training.splits import assign_folds


def test_linear_probe_writes_the_same_artifacts(
    tiny_run: RunDir, fast_config: TrainConfig, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "backbone.pt"
    torch.save(create_model("test_resnet", 7, 1).state_dict(), weights)  # other head size
    cfg = fast_config.replace(mode="linear-probe", pretrained_weights=weights)
    summary = train_run(tiny_run, cfg)

    n = tiny_run.n_samples()
    probs = tiny_run.read_array("oof/pred_probs")
    logits = tiny_run.read_array("oof/logits")
    emb = tiny_run.read_array("oof/embeddings")
    assert probs.shape == (n, 2) and logits.shape == (n, 2) and emb.shape[0] == n
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(
        probs[:, 1], 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0]))), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_array_equal(
        tiny_run.read_array("oof/folds"), assign_folds(tiny_run.read_manifest(), folds=3)
    )
    for v in ("center_masked", "border_only", "corners_masked"):
        assert not np.allclose(tiny_run.read_array(f"oof/masked/{v}"), probs)
    state = torch.load(tiny_run.path / "train/fold_0.pt", weights_only=True)
    assert state["weight"].shape == (1, emb.shape[1])
    hist = tiny_run.read_json("train/history.json")
    assert hist["mode"] == "linear-probe"
    assert all(f["chosen_C"] in [g["C"] for g in f["c_grid"]] for f in hist["folds"])
    assert summary.oof_auc.estimate > 0.7  # random-ish small features still carry the planted signal
    assert tiny_run.read_run_json()["train"]["mode"] == "linear-probe"


def test_linear_probe_is_deterministic_and_resumable(
    make_tiny_run, fast_config: TrainConfig  # type: ignore[no-untyped-def]
) -> None:
    cfg = fast_config.replace(mode="linear-probe", masked_variants=("center_masked",))
    a, b = make_tiny_run("a"), make_tiny_run("b")
    train_run(a, cfg)
    train_run(b, cfg)
    np.testing.assert_array_equal(a.read_array("oof/pred_probs"), b.read_array("oof/pred_probs"))
    again = train_run(a, cfg)
    assert all(f.reused for f in again.folds)
    np.testing.assert_array_equal(a.read_array("oof/pred_probs"), b.read_array("oof/pred_probs"))
