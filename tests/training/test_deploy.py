"""``medaudit predict``: fold-ensemble scores of new images equal training's held-out scores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.consistency import verify_run
from audit.context import UNLABELED, AuditContext
from audit.engine import audit_context
from audit.rundir import RunDir
from medaudit.cli import main

SIZE = 28
TINY = ["--model", "test_resnet", "--folds", "3", "--epochs", "1", "--batch-size", "32"]
# two models per fold, so that predict must combine a fold's models as training does
TWO_PER_FOLD = ["--models-per-fold", "2"]


def _images(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    x = rng.normal(100, 20, (len(y), SIZE, SIZE))
    for i, label in enumerate(y):
        r, c = rng.integers(2, SIZE - 9, 2)
        x[i, r : r + 7, c : c + 7] += 90 * label
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("deploy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDAUDIT_SECRET", "s" * 40)
        mp.setenv("MEDAUDIT_CACHE_DIR", str(base / "cache"))
        rng = np.random.default_rng(0)
        ytr, yte = rng.integers(0, 2, 120), rng.integers(0, 2, 30)
        data = base / "data.npz"
        np.savez(data, train_images=_images(rng, ytr), train_labels=ytr[:, None],
                 test_images=_images(rng, yte), test_labels=yte[:, None])
        run = base / "trained"
        assert main(["ingest", "--npz", str(data), "--out", str(run), "--image-size", "28"]) == 0
        assert main(["train", str(run), *TINY, *TWO_PER_FOLD, "--holdout-split", "test"]) == 0
        yield base, run


def test_predict_reproduces_the_held_out_scores(trained: tuple[Path, Path]) -> None:
    base, run = trained
    src = np.load(base / "data.npz")
    new_npz = base / "new.npz"
    np.savez(new_npz, test_images=src["test_images"])  # no labels
    out = base / "new"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDAUDIT_SECRET", "s" * 40)
        assert main(["predict", str(run), "--npz", str(new_npz), "--out", str(out)]) == 0
    ref, new = RunDir(run), RunDir(out)
    verify_run(new)
    folds = ref.read_array("oof/folds")
    hold = np.flatnonzero(folds == -1)
    assert len(hold) == 30
    assert np.allclose(new.read_array("oof/pred_probs"), ref.read_array("oof/pred_probs")[hold],
                       atol=1e-5)
    assert np.allclose(new.read_array("oof/embeddings"), ref.read_array("oof/embeddings")[hold],
                       atol=1e-4)
    assert (new.read_array("oof/folds") == -1).all()
    by_fold = new.read_array("oof/pred_probs_by_fold")
    assert by_fold.shape == (30, 3, 2) and by_fold.dtype == np.float32
    assert np.allclose(by_fold.mean(axis=1), new.read_array("oof/pred_probs"), atol=1e-6)
    info = new.read_run_json()
    assert "oof/pred_probs_by_fold.npy" in info["predict"]["artifacts"]
    assert info["predict"]["models"] == 6
    assert info["has_labels"] is False and info["predict"]["folds"] == 3
    assert info["reference"]["path"] == str(run.resolve())
    assert (new.read_manifest()["label"] == UNLABELED).all()
    assert new.has("image_properties.parquet")
    # checks that need labels skip with a reason; none crashes
    ctx = AuditContext.from_run_dir(new)
    res = audit_context(ctx)
    assert not res.errors, res.errors
    reasons = {s["check"]: s["reason"] for s in res.skipped}
    assert "label_issues" in reasons and "no labels" in reasons["label_issues"]
    assert "calibration" in reasons


def test_each_fold_model_reproduces_its_out_of_fold_scores(trained: tuple[Path, Path]) -> None:
    """Predict on the trained run's own images: the probabilities of fold f's models for the
    rows of fold f equal training's out-of-fold probabilities (same models, same combination
    of a fold's two models), so prevalence estimators can compare like with like."""
    base, run = trained
    ref = RunDir(run)
    man = ref.read_manifest()
    src = np.load(base / "data.npz")
    images = {"train": src["train_images"], "test": src["test_images"]}
    ordered = np.stack([images[s][int(i.rsplit("-", 1)[1])]
                        for s, i in zip(man["split"], man["sample_id"], strict=True)])
    every = base / "every.npz"
    np.savez(every, test_images=ordered)
    out = base / "every"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDAUDIT_SECRET", "s" * 40)
        assert main(["predict", str(run), "--npz", str(every), "--out", str(out)]) == 0
    by_fold = RunDir(out).read_array("oof/pred_probs_by_fold")
    folds, oof_probs = ref.read_array("oof/folds"), ref.read_array("oof/pred_probs")
    rows = np.flatnonzero(folds >= 0)
    assert len(rows) == 120
    assert np.allclose(by_fold[rows, folds[rows]], oof_probs[rows], atol=1e-5)
    # the other folds' models saw these rows in training: they score them differently
    other = (folds[rows] + 1) % 3
    assert np.abs(by_fold[rows, other] - oof_probs[rows]).max() > 1e-3


def test_predict_from_an_unlabeled_manifest_keeps_ingestion_guarantees(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, run = trained
    rng = np.random.default_rng(5)
    folder = base / "pngs"
    folder.mkdir()
    rows = []
    for i, img in enumerate(_images(rng, rng.integers(0, 2, 12))):
        Image.fromarray(img).save(folder / f"img{i}.png")
        rows.append({"path": f"img{i}.png", "patient_id": f"MRN-{i:04d}",
                     "patient_name": "DOE^JANE"})
    (folder / "broken.png").write_bytes(b"not a png")
    rows.append({"path": "broken.png", "patient_id": "MRN-9999", "patient_name": "DOE^JOHN"})
    csv = folder / "new.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = base / "new_manifest"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDAUDIT_SECRET", "s" * 40)
        assert main(["predict", str(run), "--manifest", str(csv), "--out", str(out)]) == 0
    new = RunDir(out)
    assert new.n_samples() == 12 and len(new.read_quarantine()) == 1
    assert new.read_array("oof/pred_probs").shape == (12, 2)
    for p in out.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert b"MRN-" not in data and b"DOE^" not in data, p
    assert "drift" in capsys.readouterr().out
    # a run that was never trained is refused in one line
    assert main(["predict", str(folder), "--manifest", str(csv), "--out", str(base / "x")]) == 2


def test_drift_command_finds_a_brighter_scanner_and_not_the_same_images(
    trained: tuple[Path, Path],
) -> None:
    import json

    from audit.rundir import FINDINGS

    base, run = trained
    src = np.load(base / "data.npz")
    fast = base / "fast.toml"
    fast.write_text("[drift]\nn_perm = 100\nn_boot = 30\n[prevalence_shift]\nn_boot = 30\n"
                    'calibrator = "temperature"\n')
    outs = {}
    for name, images in (("same", src["test_images"]),
                         ("brighter", np.clip(src["test_images"].astype(int) + 70, 0, 255)
                          .astype(np.uint8))):
        npz = base / f"{name}.npz"
        np.savez(npz, test_images=images)
        outs[name] = base / f"drift_{name}"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MEDAUDIT_SECRET", "s" * 40)
            assert main(["predict", str(run), "--npz", str(npz), "--out", str(outs[name])]) == 0
            assert main(["drift", str(run), str(outs[name]), "--config", str(fast)]) == 0
    def drift(name: str) -> list[dict]:
        findings = json.loads(RunDir(outs[name]).file(FINDINGS).read_text())
        return [f for f in findings if f["check"] == "drift"]

    # features, metadata and image properties of the same images: no drift (the predicted
    # prevalence of this 1-epoch model is not asserted: see the drift check's limits)
    same = [f for f in drift("same") if "class_index" not in f["evidence"]]
    assert same and not any(f["severity"] == "warning" for f in same)
    bright = {f["title"]: f for f in drift("brighter") if f["severity"] == "warning"}
    props = next(f for f in drift("brighter") if "properties" in f["evidence"])
    assert props["severity"] == "warning"
    flagged = {m["column"] for m in props["evidence"]["properties"] if m["p_holm"] < 0.05}
    assert "mean_intensity" in flagged, flagged
    assert any("two-sample" in t for t in bright), list(bright)
    assert main(["report", str(outs["brighter"]), "--format", "html"]) == 0


def test_an_unlabeled_batch_cannot_be_trained(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from ingest.sources import IngestOptions, ingest_npz

    rng = np.random.default_rng(9)
    npz = tmp_path / "unlabeled.npz"
    np.savez(npz, test_images=_images(rng, rng.integers(0, 2, 20)))
    run = ingest_npz(npz, tmp_path / "run", IngestOptions(image_size=28, classes=("0", "1"),
                                                          require_labels=False)).run
    assert run.read_run_json()["has_labels"] is False
    assert main(["train", str(run.path), *TINY]) == 2
    assert "has no labels" in capsys.readouterr().err


def test_dashboard_opens_predict_and_drift_runs(
    trained: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``predict`` batch compared by ``drift`` opens in every dashboard page like any run."""
    from streamlit.testing.v1 import AppTest

    from dashboard.state import ENV_DATA_ROOT, ENV_RUNS
    from dashboard.views import PAGES

    base, run = trained
    src = np.load(base / "data.npz")
    folder = base / "dashboard_runs"
    folder.mkdir()
    npz = base / "batch_for_dashboard.npz"
    np.savez(npz, test_images=np.clip(src["test_images"].astype(int) + 70, 0, 255).astype(np.uint8))
    fast = base / "fast_dashboard.toml"
    fast.write_text("[drift]\nn_perm = 100\nn_boot = 30\n[prevalence_shift]\nn_boot = 30\n"
                    'calibrator = "temperature"\n')
    batch = folder / "batch"
    monkeypatch.setenv("MEDAUDIT_SECRET", "s" * 40)
    assert main(["predict", str(run), "--npz", str(npz), "--out", str(batch)]) == 0
    assert main(["drift", str(run), str(batch), "--config", str(fast)]) == 0
    monkeypatch.setenv(ENV_RUNS, str(folder))
    monkeypatch.delenv(ENV_DATA_ROOT, raising=False)
    app = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
    at = AppTest.from_file(app, default_timeout=120)
    at.query_params["run"] = "batch"
    at = at.run()
    assert not at.exception, at.exception
    for page, _, _ in PAGES:
        at.sidebar.radio(key="page").set_value(page).run()
        assert not at.exception, (page, at.exception)
        assert at.header, page
        assert at.session_state["run"] == "batch"


def _backbone_weights(path: Path, seed: int) -> Path:
    """A local 'pretrained' weights file (random test_resnet weights)."""
    import timm
    import torch

    torch.manual_seed(seed)
    torch.save(timm.create_model("test_resnet", num_classes=2, in_chans=1).state_dict(), path)
    return path


def test_predict_rebuilds_a_pretrained_model_with_its_stem_pool(trained: tuple[Path, Path]) -> None:
    """stem_pool 'auto' keeps the stem pool of a model trained from pretrained weights; predict
    rebuilds the model without the weights file and must keep it too."""
    base, _ = trained
    weights = _backbone_weights(base / "pretrained.pt", 5)
    run, out, new_npz = base / "pre", base / "pre_new", base / "pre_new.npz"
    np.savez(new_npz, test_images=np.load(base / "data.npz")["test_images"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDAUDIT_SECRET", "s" * 40)
        assert main(["ingest", "--npz", str(base / "data.npz"), "--out", str(run),
                     "--image-size", "28"]) == 0
        assert main(["train", str(run), *TINY, "--pretrained-weights", str(weights),
                     "--stem-pool", "auto", "--holdout-split", "test"]) == 0
        assert main(["predict", str(run), "--npz", str(new_npz), "--out", str(out)]) == 0
    ref, new = RunDir(run), RunDir(out)
    hold = np.flatnonzero(ref.read_array("oof/folds") == -1)
    assert np.allclose(new.read_array("oof/pred_probs"), ref.read_array("oof/pred_probs")[hold],
                       atol=1e-5)


def test_predict_scores_a_linear_probe_run(trained: tuple[Path, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    base, _ = trained
    weights = _backbone_weights(base / "backbone.pt", 3)
    run = base / "probe"
    out = base / "probe_new"
    new_npz = base / "probe_new.npz"
    np.savez(new_npz, test_images=np.load(base / "data.npz")["test_images"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDAUDIT_SECRET", "s" * 40)
        assert main(["ingest", "--npz", str(base / "data.npz"), "--out", str(run),
                     "--image-size", "28"]) == 0
        assert main(["train", str(run), "--model", "test_resnet", "--folds", "3",
                     "--mode", "linear-probe", "--pretrained-weights", str(weights),
                     "--holdout-split", "test"]) == 0
        assert main(["predict", str(run), "--npz", str(new_npz), "--out", str(out)]) == 0
        ref, new = RunDir(run), RunDir(out)
        hold = np.flatnonzero(ref.read_array("oof/folds") == -1)
        assert np.allclose(new.read_array("oof/pred_probs"), ref.read_array("oof/pred_probs")[hold],
                           atol=1e-4)
        assert np.allclose(new.read_array("oof/embeddings"), ref.read_array("oof/embeddings")[hold],
                           atol=1e-3)
        assert new.read_array("oof/pred_probs_by_fold").shape == (30, 3, 2)
        assert new.read_run_json()["predict"]["mode"] == "linear-probe"
        from training.deploy import predict_run
        from training.executors import RayExecutor

        with pytest.raises(ValueError, match="not as Ray tasks"):  # refused before Ray starts
            predict_run(run, out, executor=RayExecutor())
        # the batch belongs to the probe's models: drift against another training is refused
        capsys.readouterr()
        assert main(["drift", str(base / "trained"), str(out)]) == 2
        assert "another training than REFERENCE_RUN" in capsys.readouterr().err
        # another backbone behind the same path would change every score: refused
        _backbone_weights(weights, 4)
        capsys.readouterr()
        assert main(["predict", str(run), "--npz", str(new_npz), "--out", str(base / "p2")]) == 2
        assert "does not reproduce the embeddings" in capsys.readouterr().err
        weights.unlink()
        assert main(["predict", str(run), "--npz", str(new_npz), "--out", str(base / "p3")]) == 2
        assert "it does not exist" in capsys.readouterr().err
