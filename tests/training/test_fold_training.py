"""One fold as an independent unit: outputs, refit, ensembles, reuse, determinism, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import training.fold_training as fold_training
import training.models as models_mod
from audit.rundir import RunDir
from training import TrainConfig, train_fold
from training.fold_outputs import load_fold_outputs
from training.masking import MASKED_VARIANTS
from training.models import split_model_states
from training.predict import softmax
from training.reproducibility import fold_seed, member_seed
from training.splits import assign_folds


def test_train_fold_writes_only_its_own_outputs(tiny_run: RunDir, fast_config: TrainConfig) -> None:
    res = train_fold(tiny_run, 1, fast_config)
    d = tiny_run.path / ".work/train/fold_1"
    assert (tiny_run.path / ".work/train/fold_1/model.pt").is_file()
    assert (d / "done").is_file()
    assert not (tiny_run.path / ".work/train/fold_0").exists()
    assert not tiny_run.has("oof/pred_probs")

    manifest = tiny_run.read_manifest()
    folds = assign_folds(manifest, folds=3, seed=fast_config.seed)
    out = load_fold_outputs(tiny_run, 1, MASKED_VARIANTS)
    rows = out.oof.rows
    np.testing.assert_array_equal(rows, np.flatnonzero(folds == 1))
    probs = out.oof.probs
    assert probs.shape == (rows.size, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert out.oof.embeddings.shape[0] == rows.size
    for v in MASKED_VARIANTS:
        assert out.oof.masked[v].shape == probs.shape
    assert out.holdout.rows.size == 0 and out.holdout.probs.shape == (0, 2)  # no holdout split

    hist = json.loads((d / "history.json").read_text())
    assert len(hist["epochs"]) == fast_config.epochs
    for key in ("train_loss", "inner_val_loss", "inner_val_auc", "inner_val_acc", "lr"):
        assert key in hist["epochs"][0]
    assert hist["in_sample_auc"] is not None and hist["n_inner_val"] > 0
    assert hist["n_oof"] == rows.size and "n_heldout" not in hist
    assert res.fold == 1 and not res.reused and res.n_oof == rows.size
    import torch

    state = torch.load(tiny_run.path / ".work/train/fold_1/model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_refit_uses_all_training_rows_for_the_selected_epochs_and_never_the_held_out_fold(
    tiny_run: RunDir, fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, object]] = []
    real = fold_training.fit_model

    def spy(fc, rows, **kw):  # type: ignore[no-untyped-def]
        out = real(fc, rows, **kw)
        calls.append({"rows": np.array(rows), "inner": kw.get("inner_val"),
                      "stop": kw.get("stop_after"), "epochs_run": len(out.history),
                      "best": out.best_epoch})
        return out

    monkeypatch.setattr(fold_training, "fit_model", spy)
    cfg = fast_config.replace(epochs=4, select_epochs=True, refit=True)
    res = train_fold(tiny_run, 0, cfg)
    select, refit = calls
    held = np.flatnonzero(assign_folds(tiny_run.read_manifest(), folds=3, seed=cfg.seed) == 0)
    # selection: training rows only, scored every epoch on the inner split
    assert select["inner"] is not None and select["stop"] is None
    assert not set(select["rows"]) & set(select["inner"])  # type: ignore[arg-type]
    # refit: training + inner rows, exactly the selected number of epochs, no evaluation set
    assert refit["inner"] is None and refit["stop"] == select["best"] == res.best_epoch
    assert refit["epochs_run"] == res.best_epoch
    np.testing.assert_array_equal(
        np.sort(refit["rows"]),  # type: ignore[arg-type]
        np.sort(np.concatenate([select["rows"], select["inner"]])),  # type: ignore[list-item]
    )
    assert not set(refit["rows"]) & set(held)  # type: ignore[arg-type]
    assert res.refit and res.n_train == len(refit["rows"])  # type: ignore[arg-type]
    hist = json.loads((tiny_run.path / ".work/train/fold_0/history.json").read_text())
    assert hist["refit"]["n_rows"] == res.n_train
    assert len(hist["refit"]["epochs"]) == res.best_epoch
    assert "inner_val_loss" not in hist["refit"]["epochs"][0]

    calls.clear()
    plain = train_fold(tiny_run, 1, cfg.replace(refit=False))
    assert len(calls) == 1 and not plain.refit and plain.n_train == len(calls[0]["rows"])  # type: ignore[arg-type]


def test_finished_fold_is_reused_only_under_the_same_config(
    tiny_run: RunDir, fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_fold(tiny_run, 0, fast_config.replace(epochs=1))
    calls: list[int] = []
    real = fold_training._train_fold

    def counting(ctx, fold, config, *, position, member_map=None):  # type: ignore[no-untyped-def]
        calls.append(fold)
        return real(ctx, fold, config, position=position, member_map=member_map)

    monkeypatch.setattr(fold_training, "_train_fold", counting)
    again = train_fold(tiny_run, 0, fast_config.replace(epochs=1, jobs=2, quiet=False))
    assert again.reused and calls == []
    changed = train_fold(tiny_run, 0, fast_config.replace(epochs=1, lr=fast_config.lr / 2))
    assert not changed.reused and calls == [0]


def test_same_seed_same_data_gives_identical_probabilities(
    make_tiny_run, fast_config: TrainConfig  # type: ignore[no-untyped-def]
) -> None:
    cfg = fast_config.replace(epochs=2)
    a, b = make_tiny_run("a"), make_tiny_run("b")
    train_fold(a, 2, cfg)
    train_fold(b, 2, cfg)
    out_a, out_b = (load_fold_outputs(r, 2, ("center_masked",)).oof for r in (a, b))
    for name in ("probs", "logits", "embeddings"):
        np.testing.assert_array_equal(getattr(out_a, name), getattr(out_b, name))
    np.testing.assert_array_equal(out_a.masked["center_masked"], out_b.masked["center_masked"])


def test_bad_fold_and_mode_are_refused(tiny_run: RunDir, fast_config: TrainConfig) -> None:
    with pytest.raises(ValueError, match=r"fold must be an int in \[0, 3\)"):
        train_fold(tiny_run, 3, fast_config)
    with pytest.raises(ValueError, match="linear-probe"):
        train_fold(tiny_run, 0, fast_config.replace(mode="linear-probe"))
    with pytest.raises(TypeError, match="TrainConfig"):
        train_fold(tiny_run, 0, {"epochs": 1})  # type: ignore[arg-type]


def test_stem_pool_setting_reaches_every_model_the_fold_trains(
    tiny_run: RunDir, fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    pools: list[type] = []
    real = models_mod.create_model

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        model = real(*args, **kwargs)
        pools.append(type(model.maxpool))
        return model

    monkeypatch.setattr(models_mod, "create_model", spy)
    res = train_fold(tiny_run, 0, fast_config.replace(stem_pool="drop"))
    assert pools and all(p is torch.nn.Identity for p in pools)
    assert len(pools) == (2 if res.refit else 1)  # the selection pass and the refit
    assert (tiny_run.path / ".work/train/fold_0" / "done").is_file()
    state = torch.load(tiny_run.path / ".work/train/fold_0/model.pt", weights_only=True)
    for kept in split_model_states(state):
        real("test_resnet", 2, 1).load_state_dict(kept)  # same parameters as a kept-pool model


def test_several_models_per_fold_average_the_probabilities_of_separately_seeded_models(
    make_tiny_run, fast_config: TrainConfig  # type: ignore[no-untyped-def]
) -> None:
    import torch

    from training.dataset import ImageCache, Normalization
    from training.device import resolve_device_setup
    from training.models import build_model
    from training.predict import predict_rows

    cfg = fast_config.replace(epochs=2, select_epochs=True, refit=True, keep_selected=False)
    one, two = make_tiny_run("one"), make_tiny_run("two")
    single = train_fold(one, 1, cfg)
    pair = train_fold(two, 1, cfg.replace(models_per_fold=2))
    assert single.models == 1 and pair.models == 2
    assert pair.train_images > single.train_images  # both models were trained

    # model 0 of the pair is exactly the single model (same seed); model 1 has its own seed
    solo = torch.load(one.path / ".work/train/fold_1/model.pt", weights_only=True)
    state = torch.load(two.path / ".work/train/fold_1/model.pt", weights_only=True)
    members = split_model_states(state)
    assert len(members) == 2
    assert set(members[0]) == set(members[1]) == set(solo)
    assert all(torch.equal(members[0][k], solo[k]) for k in solo)
    assert not all(torch.equal(members[0][k], members[1][k]) for k in solo)
    hist = json.loads((two.path / ".work/train/fold_1/history.json").read_text())
    assert hist["models"] == hist["kept_models"] == 2 and len(hist["other_models"]) == 1
    assert hist["other_models"][0]["seed"] == member_seed(cfg.seed, 1, 1) != hist["seed"]
    assert hist["seed"] == member_seed(cfg.seed, 1, 0) == fold_seed(cfg.seed, 1)

    # the written probabilities are the mean of the two models' (logit-adjusted) probabilities
    pair_out = load_fold_outputs(two, 1, ()).oof
    rows = pair_out.rows
    cache, setup = ImageCache(two), resolve_device_setup(device="cpu", precision=cfg.precision)
    norm = Normalization(**{k: tuple(v) for k, v in hist["normalization"].items()})
    labels = two.read_manifest()["label"].to_numpy()
    fit_rows = assign_folds(two.read_manifest(), folds=3, seed=cfg.seed) != 1  # refit: all but fold 1
    assert fit_rows.sum() == hist["n_train"]
    log_prior = np.log(np.bincount(labels[fit_rows], minlength=2) / fit_rows.sum())
    probs = []
    for m in members:
        net = build_model(cfg, 2, cache, setup)
        net.load_state_dict(m)
        logits, _ = predict_rows(net, cache, rows, setup=setup, norm=norm, image_size=None,
                                 batch_size=64)
        probs.append(softmax(logits + log_prior))
    np.testing.assert_allclose(pair_out.probs, np.mean(probs, axis=0), atol=1e-5)
    np.testing.assert_allclose(np.exp(pair_out.logits), pair_out.probs, atol=1e-5)
    assert not np.allclose(pair_out.probs, load_fold_outputs(one, 1, ()).oof.probs)


def test_several_models_per_fold_need_fine_tuning() -> None:
    with pytest.raises(ValueError, match="models_per_fold=2 needs mode='finetune'"):
        TrainConfig(mode="linear-probe", models_per_fold=2)
    with pytest.raises(ValueError, match="models_per_fold must be >= 1"):
        TrainConfig(models_per_fold=0)


def test_keeping_the_selected_model_averages_it_with_the_refit(
    make_tiny_run, fast_config: TrainConfig  # type: ignore[no-untyped-def]
) -> None:
    import torch

    cfg = fast_config.replace(epochs=2, select_epochs=True, refit=True, keep_selected=False)
    runs = {name: make_tiny_run(name) for name in ("refit", "selected", "both")}
    train_fold(runs["refit"], 0, cfg)
    train_fold(runs["selected"], 0, cfg.replace(refit=False))
    res = train_fold(runs["both"], 0, cfg.replace(keep_selected=True))
    assert res.refit

    def load(name: str, what: str) -> np.ndarray:
        part, _, field = what.partition(".")
        scored = getattr(load_fold_outputs(runs[name], 0, ("border_only",)), part)
        return scored.masked["border_only"] if field == "masked" else getattr(scored, field)

    # the same seed gives the same selection pass and refit as in the two single-model runs
    kept = split_model_states(torch.load(runs["both"].path / ".work/train/fold_0/model.pt", weights_only=True))
    for model, name in zip(kept, ("refit", "selected"), strict=True):
        solo = torch.load(runs[name].path / ".work/train/fold_0/model.pt", weights_only=True)
        assert set(model) == set(solo) and all(torch.equal(model[k], v) for k, v in solo.items())
    for what in ("oof.probs", "holdout.probs", "oof.masked"):
        np.testing.assert_allclose(load("both", what), (load("refit", what) + load("selected", what)) / 2,
                                   atol=1e-6)
    np.testing.assert_array_equal(load("both", "oof.embeddings"), load("refit", "oof.embeddings"))
    hist = json.loads((runs["both"].path / ".work/train/fold_0/history.json").read_text())
    assert (hist["models"], hist["kept_models"]) == (1, 2)
    # without a refit there is only one model to keep
    alone_run = make_tiny_run("alone")
    alone = train_fold(alone_run, 0, cfg.replace(refit=False, keep_selected=True))
    assert not alone.refit
    np.testing.assert_array_equal(load("selected", "oof.probs"),
                                  load_fold_outputs(alone_run, 0, ()).oof.probs)


def test_non_finite_model_outputs_name_the_parameters_to_change(
    tiny_run: RunDir, fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fold_training.predict_rows

    def diverged(*args, **kwargs):  # type: ignore[no-untyped-def]
        logits, emb = real(*args, **kwargs)
        return np.full_like(logits, np.nan), emb

    monkeypatch.setattr(fold_training, "predict_rows", diverged)
    with pytest.raises(ValueError, match=r"fold 0: .*non-finite.*TrainConfig\.lr.*precision='fp32'"):
        train_fold(tiny_run, 0, fast_config.replace(epochs=1, masked_variants=()))
    assert not (tiny_run.path / ".work/train/fold_0/done").exists()
