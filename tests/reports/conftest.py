"""A small audited run directory built without training (seeded, a few seconds)."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from audit.consistency import artifact_digests, data_fingerprint
from audit.engine import run_audit
from audit.rundir import RunDir
from tests.conftest import build_tiny_run

N = 160


def add_model_outputs(run: RunDir, *, seed: int = 0, flip: float = 0.08) -> None:
    """Out-of-fold arrays of a decent synthetic model, masked variants, history, run.json['train']."""
    rng = np.random.default_rng(seed)
    m = run.read_manifest()
    y = m["label"].to_numpy()
    n = len(y)
    noisy = y.copy()
    flips = rng.random(n) < flip
    noisy[flips] = 1 - noisy[flips]
    logit = 2.2 * (noisy - 0.5) * 2 + rng.normal(0, 1.0, n)
    p1 = 1 / (1 + np.exp(-logit))
    probs = np.c_[1 - p1, p1].astype(np.float32)
    folds = (np.arange(n) // 2 % 3).astype(np.int16)
    run.write_array("oof/pred_probs", probs)
    run.write_array("oof/logits", np.log(probs).astype(np.float32))
    run.write_array("oof/embeddings", (rng.normal(0, 1, (n, 8)) + y[:, None]).astype(np.float32))
    run.write_array("oof/folds", folds)
    for v in ("center_masked", "border_only", "corners_masked"):
        q = np.clip(p1 + rng.normal(0, 0.2, n), 0.01, 0.99)
        run.write_array(f"oof/masked/{v}", np.c_[1 - q, q].astype(np.float32))
    history = {"mode": "finetune", "folds": [
        {"fold": k, "best_epoch": 3, "epochs": [
            {"epoch": e, "train_loss": 0.7 - 0.05 * e, "inner_val_loss": 0.68 - 0.03 * e,
             "inner_val_auc": 0.6 + 0.05 * e} for e in range(1, 5)]} for k in range(3)]}
    run.write_json("train/history.json", history)
    consumed = ["oof/pred_probs.npy", "oof/logits.npy", "oof/embeddings.npy", "oof/folds.npy",
                "oof/masked/center_masked.npy", "oof/masked/border_only.npy",
                "oof/masked/corners_masked.npy", "train/history.json"]
    run.update_run_json({"train": {
        "config": {"model": "resnet10t", "folds": 3, "epochs": 4, "batch_size": 32, "lr": 0.001,
                   "seed": 0, "mode": "finetune", "pretrained_weights": None,
                   "models_per_fold": 1},
        "config_hash": "0123456789abcdef", "mode": "finetune",
        "data_fingerprint": data_fingerprint(run), "n_rows": n, "n_cv_rows": n,
        "n_holdout_rows": 0, "seeds": {"seed": 0, "folds": [11, 12, 13]},
        "versions": {"python": "3.11", "torch": "2.x"},
        "setup": {"device": "cpu", "precision": "fp32"},
        "timings": {"seconds": 12.5, "folds": [4.0, 4.1, 4.4]},
        "folds": [{"fold": k, "auc": 0.8, "in_sample_auc": 0.9, "inner_val_auc": 0.78,
                   "best_epoch": 3, "epochs_run": 4, "n_train": 106, "n_oof": 54}
                  for k in range(3)],
        "oof_auc": {"estimate": 0.81, "ci_low": 0.74, "ci_high": 0.87, "level": 0.95,
                    "method": "patient-level percentile bootstrap"},
        "oof_acc": {"estimate": 0.75, "ci_low": 0.68, "ci_high": 0.81, "level": 0.95,
                    "method": "Wilson score interval"},
        "masked_oof_auc": {"center_masked": 0.7, "border_only": 0.55, "corners_masked": 0.8},
        "holdout": None, "auc_definition": "binary ROC AUC",
        "finished_at": "2026-01-01T00:00:00+0000",
        "artifacts": artifact_digests(run, consumed)}})


def build_audited_run(path: Path) -> RunDir:
    """A 160-image run with sites, sex and age, model outputs and a real audit."""
    run = build_tiny_run(path, n=N, size=32)
    m = run.read_manifest()
    rng = np.random.default_rng(1)
    m["sex"] = rng.choice(["F", "M"], len(m))
    m["age"] = rng.integers(20, 90, len(m)).astype(float)
    run.write_manifest(m)
    run.update_run_json({"ingest": {
        "source": {"kind": "manifest", "path": "/secret/place/manifest.csv"},
        "n_accepted": len(m), "n_refused": 0, "image_shape": [1, 32, 32],
        "options": {"image_size": 32, "channels": "gray", "frame_policy": "middle",
                    "secret_file": None, "cache_dir": None},
        "key_fingerprint": "abcdef012345", "versions": {"numpy": np.__version__},
        "input_files": {"algorithm": "BLAKE2b-128",
                        "files": {"manifest.csv": "0" * 32,
                                  **{f"img/{i}.png": f"{i:032x}" for i in range(len(m))}}}}})
    add_model_outputs(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_audit(run)
    return run


@pytest.fixture(scope="session")
def _audited_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_audited_run(tmp_path_factory.mktemp("reports") / "audited").path


@pytest.fixture
def audited_run(_audited_template: Path, tmp_path: Path) -> RunDir:
    """A private copy of the audited synthetic run (tests may write into it)."""
    dst = tmp_path / "run"
    shutil.copytree(_audited_template, dst)
    return RunDir(dst)


@pytest.fixture
def add_finding() -> Callable[[RunDir, dict], None]:
    """Append a finding (a dict of ``findings.json``) and mark its check as run."""

    def _add(run: RunDir, finding: dict) -> None:
        found = json.loads(run.file("findings.json").read_text())
        found.append(finding)
        run.write_json("findings.json", found)
        info = run.read_run_json()["audit"]
        info["checks_run"] = sorted({*info["checks_run"], finding["check"]})
        run.update_run_json({"audit": info})

    return _add
