"""Budget-aware defaults: the derivation's properties, the config's "auto" fields, and a
3-epoch run that is not worse than a bare loop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from audit.metrics import auc_with_ci
from audit.rundir import RunDir
from training import TrainConfig, train_run
from training.budget import AUTO_FIELDS, budget_defaults

EPOCHS = (1, 2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 60, 100)


def test_long_regime_keeps_the_40_epoch_tuning() -> None:
    d = budget_defaults(40)
    assert d.to_dict() == {
        "ema_epochs": 3.0,
        "warmup_epochs": 2.0,
        "mixup": 0.2,
        "augment_probability": 0.9,
        "select_epochs": True,
        "refit": True,
        "keep_selected": True,
    }
    assert budget_defaults(100).ema_epochs == 3.0 and budget_defaults(100).mixup == 0.2


def test_short_runs_drop_what_needs_long_training() -> None:
    for e in (1, 3, 10):
        d = budget_defaults(e)
        assert d.ema_epochs == 0 and d.mixup == 0 and not d.refit and not d.keep_selected
        assert not d.select_epochs
        assert 0 < d.augment_probability < 0.9


def test_regularisation_grows_with_the_budget_and_warmup_is_a_fraction() -> None:
    ds = [budget_defaults(e) for e in EPOCHS]
    for name in ("ema_epochs", "mixup", "augment_probability"):
        values = [getattr(d, name) for d in ds]
        assert values == sorted(values), name
    for name in ("select_epochs", "refit", "keep_selected"):
        on = [getattr(d, name) for d in ds]
        assert on == sorted(on), name  # once on, stays on
    for e, d in zip(EPOCHS, ds, strict=True):
        assert 0 <= d.warmup_epochs <= 0.1 * e
        assert d.ema_epochs <= 0.1 * e  # the average never spans more than a tenth of the run


def test_few_optimizer_steps_turn_the_weight_average_off() -> None:
    assert budget_defaults(40, steps_per_epoch=4).ema_epochs == 0.0  # 160 steps in all
    assert budget_defaults(40, steps_per_epoch=11).ema_epochs == 3.0  # BreastMNIST: 440 steps


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_bad_epochs_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        budget_defaults(bad)  # type: ignore[arg-type]


def test_config_auto_fields_resolve_and_explicit_values_are_kept() -> None:
    cfg = TrainConfig(epochs=3, mixup=0.5)
    assert set(cfg.auto_fields) == set(AUTO_FIELDS) - {"mixup"}
    r = cfg.resolved(steps_per_epoch=100)
    assert r.auto_fields == () and r.mixup == 0.5 and r.ema_epochs == 0.0 and r.refit is False
    assert r.resolved(1) == r  # idempotent
    # an unresolved config re-derives for new epochs; a resolved one keeps its values
    assert cfg.replace(epochs=40).resolved(100).refit is True
    assert r.replace(epochs=40).refit is False
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"TrainConfig\.warmup_epochs must be >= 0"):
        TrainConfig(warmup_epochs=-1)


def test_run_json_records_the_derived_values(tiny_run: RunDir, fast_config: TrainConfig) -> None:
    cfg = fast_config.replace(folds=2, epochs=2, masked_variants=(), select_epochs=None)
    assert "refit" in cfg.auto_fields
    summary = train_run(tiny_run, cfg)
    rec = json.loads((tiny_run.path / "run.json").read_text())["train"]
    assert rec["auto_fields"]["refit"] is False and rec["auto_fields"]["mixup"] == 0.0
    assert rec["config"]["refit"] is False and rec["config"]["ema_epochs"] == 0.0
    assert rec["auto_fields"]["select_epochs"] is False
    assert summary.record["config_hash"] == cfg.resolved(1).config_hash()


def test_short_runs_train_once_on_all_training_rows(
    tiny_run: RunDir, fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.fold_training as fold_training
    from training.fold_training import train_fold
    from training.run_context import load_context
    from training.splits import fold_split

    calls: list[dict[str, object]] = []
    real = fold_training.fit_model

    def spy(fc, rows, **kw):  # type: ignore[no-untyped-def]
        out = real(fc, rows, **kw)
        calls.append({"rows": np.array(rows), "inner": kw.get("inner_val"), "n": len(out.history)})
        return out

    monkeypatch.setattr(fold_training, "fit_model", spy)
    cfg = fast_config.replace(epochs=3, select_epochs=None, masked_variants=())
    res = train_fold(tiny_run, 0, cfg)
    ctx = load_context(tiny_run, cfg)
    split = fold_split(ctx.folds, 0, ctx.labels, ctx.groups, inner_val_fraction=0.25, seed=0)
    assert len(calls) == 1 and calls[0]["inner"] is None and calls[0]["n"] == 3
    np.testing.assert_array_equal(calls[0]["rows"], np.sort(np.r_[split.train, split.inner_val]))
    assert not res.refit and res.models == 1 and res.n_train == len(calls[0]["rows"])  # type: ignore[arg-type]
    assert not set(calls[0]["rows"].tolist()) & set(split.oof.tolist())  # type: ignore[union-attr]


@pytest.mark.slow
def test_three_epoch_defaults_are_not_worse_than_a_bare_loop(make_tiny_run) -> None:  # type: ignore[no-untyped-def]
    """On an easy task, 3 epochs of the defaults match a bare AdamW + one-cycle loop."""
    from bench.bare_loop import bare_loop

    run = make_tiny_run("easy", n=240, size=32, signal=0.3, seed=3)
    folds, epochs = 3, 3
    bare = bare_loop(
        run, folds=folds, epochs=epochs, model="test_resnet", batch_size=16, bf16=False
    )
    bare_auc = auc_with_ci(bare.labels, bare.probs)
    cfg = TrainConfig(
        model="test_resnet",
        folds=folds,
        epochs=epochs,
        batch_size=16,
        precision="fp32",
        masked_variants=(),
        quiet=True,
    )
    ours = train_run(run, cfg).oof_auc
    assert np.array_equal(run.read_array("oof/folds"), bare.folds)  # the same folds
    assert math.isfinite(ours.estimate) and math.isfinite(bare_auc.low)
    assert ours.estimate >= bare_auc.low, (ours, bare_auc)


def test_seed_summary_pairs_each_variant_with_the_bare_loop_of_its_seed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``bench/budget_seeds.py``: differences are paired by seed, with a t interval."""
    import json

    from bench.budget_seeds import collect, summarize

    def rec(variant: str, oof: float, hold: float) -> dict[str, object]:
        return {
            "variant": variant,
            "epochs": 10,
            "seconds": 1.0,
            "oof_auc": {"estimate": oof},
            "holdout_auc": {"estimate": hold},
        }

    # the variant trails the bare loop by exactly 0.02 on every seed, whose levels differ
    for seed, level in enumerate((0.80, 0.90, 0.85)):
        runs = [rec("bare", level, 0.9), rec("default", level - 0.02, 0.9 + seed / 100)]
        (tmp_path / f"s{seed}.json").write_text(json.dumps({"seed": seed, "runs": runs}))
    rows = {r["variant"]: r for r in summarize(collect(sorted(tmp_path.glob("*.json"))))}
    d = rows["default"]["oof_minus_reference"]
    assert d["n"] == 3 and d["mean"] == pytest.approx(-0.02) and d["high"] - d["low"] < 1e-9
    h = rows["default"]["holdout_minus_reference"]
    assert h["mean"] == pytest.approx(0.01) and h["low"] < 0 < h["high"]  # 3 seeds: wide
    assert "oof_minus_reference" not in rows["bare"]
    assert rows["bare"]["oof"]["mean"] == pytest.approx(0.85)
