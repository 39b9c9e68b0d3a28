"""One fold as an independent unit: outputs, marker, reuse, determinism, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import training.fold as fold_mod
from audit.rundir import RunDir
from training import TrainConfig, train_fold
from training.folds import assign_folds
from training.masking import MASKED_VARIANTS
from training.models import split_model_states


def test_train_fold_writes_only_its_own_outputs(tiny_run: RunDir, fast_config: TrainConfig) -> None:
    res = train_fold(tiny_run, 1, fast_config)
    d = tiny_run.path / "train" / "fold_1"
    assert (tiny_run.path / "train" / "fold_1.pt").is_file()
    assert (d / "done").is_file()
    assert not (tiny_run.path / "train" / "fold_0").exists()
    assert not tiny_run.has("oof/pred_probs")

    manifest = tiny_run.read_manifest()
    folds = assign_folds(manifest, folds=3, seed=fast_config.seed)
    rows = np.load(d / "rows.npy")
    np.testing.assert_array_equal(rows, np.flatnonzero(folds == 1))
    probs = np.load(d / "probs.npy")
    assert probs.shape == (rows.size, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert np.load(d / "embeddings.npy").shape[0] == rows.size
    for v in MASKED_VARIANTS:
        assert np.load(d / f"masked_{v}.npy").shape == probs.shape

    hist = json.loads((d / "history.json").read_text())
    assert len(hist["epochs"]) == fast_config.epochs
    for key in ("train_loss", "inner_val_loss", "inner_val_auc", "inner_val_acc", "lr"):
        assert key in hist["epochs"][0]
    assert hist["in_sample_auc"] is not None and hist["n_inner_val"] > 0
    assert res.fold == 1 and not res.reused and res.n_heldout == rows.size
    import torch

    state = torch.load(tiny_run.path / "train" / "fold_1.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_refit_uses_all_training_rows_for_the_selected_epochs_and_never_the_held_out_fold(
    tiny_run: RunDir, fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, object]] = []
    real = fold_mod._fit

    def spy(ctx, rows, config, **kw):  # type: ignore[no-untyped-def]
        out = real(ctx, rows, config, **kw)
        calls.append({"rows": np.array(rows), "inner": kw["inner_val"], "stop": kw["stop_after"],
                      "epochs_run": len(out.history), "best": out.best_epoch})
        return out

    monkeypatch.setattr(fold_mod, "_fit", spy)
    cfg = fast_config.replace(epochs=4)
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
    hist = json.loads((tiny_run.path / "train/fold_0/history.json").read_text())
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
    real = fold_mod._train_fold

    def counting(ctx, fold, config, *, position):  # type: ignore[no-untyped-def]
        calls.append(fold)
        return real(ctx, fold, config, position=position)

    monkeypatch.setattr(fold_mod, "_train_fold", counting)
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
    for name in ("probs", "logits", "embeddings", "masked_center_masked"):
        np.testing.assert_array_equal(
            np.load(a.path / "train/fold_2" / f"{name}.npy"),
            np.load(b.path / "train/fold_2" / f"{name}.npy"),
        )


def test_bad_fold_and_mode_are_refused(tiny_run: RunDir, fast_config: TrainConfig) -> None:
    with pytest.raises(ValueError, match=r"fold must be an int in \[0, 3\)"):
        train_fold(tiny_run, 3, fast_config)
    with pytest.raises(ValueError, match="linear-probe"):
        train_fold(tiny_run, 0, fast_config.replace(mode="linear-probe"))
    with pytest.raises(TypeError, match="TrainConfig"):
        train_fold(tiny_run, 0, {"epochs": 1})  # type: ignore[arg-type]


def test_weight_ema_averages_parameters_and_copies_buffers() -> None:
    import torch

    from training.fold import WeightEma

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEma(model, horizon_steps=100)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(5.0)
    ema.update(model)
    decay = min(ema.decay, 2 / 11)
    for e, s in zip(ema.module.parameters(), start):
        torch.testing.assert_close(e, s + (1 - decay))
        assert not e.requires_grad
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 5.0))


def test_stem_pool_setting_reaches_every_model_the_fold_trains(
    tiny_run: RunDir, fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    pools: list[type] = []
    real = fold_mod.create_model

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        model = real(*args, **kwargs)
        pools.append(type(model.maxpool))
        return model

    monkeypatch.setattr(fold_mod, "create_model", spy)
    res = train_fold(tiny_run, 0, fast_config.replace(stem_pool="drop"))
    assert pools and all(p is torch.nn.Identity for p in pools)
    assert len(pools) == (2 if res.refit else 1)  # the selection pass and the refit
    assert (tiny_run.path / "train" / "fold_0" / "done").is_file()
    state = torch.load(tiny_run.path / "train" / "fold_0.pt", weights_only=True)
    for kept in split_model_states(state):
        real("test_resnet", 2, 1).load_state_dict(kept)  # same parameters as a kept-pool model


def test_deterministic_context_skips_nan_filling_on_cpu_and_restores_every_flag() -> None:
    import torch
    import torch.utils.deterministic as torch_deterministic

    from training.device import resolve_device_setup
    from training.fold import deterministic

    setup = resolve_device_setup(device="cpu", precision="fp32")
    before = (torch.are_deterministic_algorithms_enabled(),
              torch_deterministic.fill_uninitialized_memory)
    torch_deterministic.fill_uninitialized_memory = True
    try:
        with deterministic(setup):
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
            # the debugging fill of torch.empty is off: it costs time, changes no result
            assert torch_deterministic.fill_uninitialized_memory is False
        assert torch.are_deterministic_algorithms_enabled() == before[0]
        assert torch_deterministic.fill_uninitialized_memory is True
    finally:
        torch_deterministic.fill_uninitialized_memory = before[1]


def test_several_models_per_fold_average_the_probabilities_of_separately_seeded_models(
    make_tiny_run, fast_config: TrainConfig  # type: ignore[no-untyped-def]
) -> None:
    import torch

    from training.dataset import ImageCache, Normalization
    from training.device import resolve_device_setup
    from training.fold import build_model, member_seed, predict_rows

    cfg = fast_config.replace(epochs=2, keep_selected=False)
    one, two = make_tiny_run("one"), make_tiny_run("two")
    single = train_fold(one, 1, cfg)
    pair = train_fold(two, 1, cfg.replace(models_per_fold=2))
    assert single.models == 1 and pair.models == 2
    assert pair.train_images > single.train_images  # both models were trained

    # model 0 of the pair is exactly the single model (same seed); model 1 has its own seed
    solo = torch.load(one.path / "train/fold_1.pt", weights_only=True)
    state = torch.load(two.path / "train/fold_1.pt", weights_only=True)
    members = split_model_states(state)
    assert len(members) == 2
    assert set(members[0]) == set(members[1]) == set(solo)
    assert all(torch.equal(members[0][k], solo[k]) for k in solo)
    assert not all(torch.equal(members[0][k], members[1][k]) for k in solo)
    hist = json.loads((two.path / "train/fold_1/history.json").read_text())
    assert hist["models"] == hist["kept_models"] == 2 and len(hist["other_models"]) == 1
    assert hist["other_models"][0]["seed"] == member_seed(cfg.seed, 1, 1) != hist["seed"]
    assert hist["seed"] == member_seed(cfg.seed, 1, 0) == fold_mod.fold_seed(cfg.seed, 1)

    # the written probabilities are the mean of the two models' (logit-adjusted) probabilities
    d = two.path / "train/fold_1"
    rows = np.load(d / "rows.npy")
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
        probs.append(fold_mod._softmax(logits + log_prior))
    np.testing.assert_allclose(np.load(d / "probs.npy"), np.mean(probs, axis=0), atol=1e-5)
    np.testing.assert_allclose(np.exp(np.load(d / "logits.npy")), np.load(d / "probs.npy"), atol=1e-5)
    assert not np.allclose(np.load(d / "probs.npy"), np.load(one.path / "train/fold_1/probs.npy"))


def test_several_models_per_fold_need_fine_tuning() -> None:
    with pytest.raises(ValueError, match="models_per_fold=2 needs mode='finetune'"):
        TrainConfig(mode="linear-probe", models_per_fold=2)
    with pytest.raises(ValueError, match="models_per_fold must be >= 1"):
        TrainConfig(models_per_fold=0)


def test_keeping_the_selected_model_averages_it_with_the_refit(
    make_tiny_run, fast_config: TrainConfig  # type: ignore[no-untyped-def]
) -> None:
    import torch

    cfg = fast_config.replace(epochs=2, keep_selected=False)
    runs = {name: make_tiny_run(name) for name in ("refit", "selected", "both")}
    train_fold(runs["refit"], 0, cfg)
    train_fold(runs["selected"], 0, cfg.replace(refit=False))
    res = train_fold(runs["both"], 0, cfg.replace(keep_selected=True))
    assert res.refit

    def load(name: str, what: str) -> np.ndarray:
        return np.load(runs[name].path / "train/fold_0" / f"{what}.npy")

    # the same seed gives the same selection pass and refit as in the two single-model runs
    kept = split_model_states(torch.load(runs["both"].path / "train/fold_0.pt", weights_only=True))
    for model, name in zip(kept, ("refit", "selected"), strict=True):
        solo = torch.load(runs[name].path / "train/fold_0.pt", weights_only=True)
        assert set(model) == set(solo) and all(torch.equal(model[k], v) for k, v in solo.items())
    for what in ("probs", "holdout_probs", "masked_border_only"):
        np.testing.assert_allclose(load("both", what), (load("refit", what) + load("selected", what)) / 2,
                                   atol=1e-6)
    np.testing.assert_array_equal(load("both", "embeddings"), load("refit", "embeddings"))
    hist = json.loads((runs["both"].path / "train/fold_0/history.json").read_text())
    assert (hist["models"], hist["kept_models"]) == (1, 2)
    # without a refit there is only one model to keep
    alone = train_fold(make_tiny_run("alone"), 0, cfg.replace(refit=False, keep_selected=True))
    assert not alone.refit
    np.testing.assert_array_equal(
        np.load(runs["selected"].path / "train/fold_0/probs.npy"),
        np.load(runs["selected"].path.parent / "alone/train/fold_0/probs.npy"),
    )
