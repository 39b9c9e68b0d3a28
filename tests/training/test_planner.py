"""``--time-budget``: duration parsing, the planner's choice on a fake cost model, the
deadline logic on a virtual clock, and one small end-to-end plan."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import training.deadline as deadline_mod
from audit.rundir import RunDir
from medaudit.cli import main
from training import TrainConfig
from training.dataset import ImageCache
from training.deadline import Deadline, share_deadline
from training.device import resolve_device_setup
from training.loop import FitContext, fit_model
from training.planner import (
    EPOCH_GRID,
    FILL,
    Candidate,
    Cost,
    RunShape,
    candidates,
    parse_duration,
    plan,
    predicted_seconds,
    size_run,
    train_within_budget,
)
from training.run_context import load_context
from training.splits import fold_split


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2m", 120),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("90s", 90),
        ("90", 90),
        ("1.5h", 5400),
        (" 5M ", 300),
        ("2m30s", 150),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "15x", "-5m", "m", "1m1h", "5s", "0"])
def test_bad_durations_are_one_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^time_budget must be"):
        parse_duration(bad)


def test_cli_bad_time_budget_exits_2_with_one_line(
    tiny_run: RunDir, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tiny_run.path), "--time-budget", "15x"])
    assert exc.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1 and "--time-budget must be a duration" in err[0]
    assert not tiny_run.has("oof/pred_probs")


# -- the planner on a fake cost model --------------------------------------------------------

SHAPE = RunShape(n_cv=2000, n_holdout=0, folds=5, inner_val_fraction=0.25, n_variants=3)
CANDS = [Candidate("resnet10t", None), Candidate("resnet18", None), Candidate("resnet34", None)]
COSTS = {
    "resnet10t": Cost(1e-3, 2e-4),
    "resnet18": Cost(1.6e-3, 3e-4),
    "resnet34": Cost(3e-3, 6e-4),
}


class FakeCosts:
    """Known costs; trials 'take' their predicted time on a virtual clock."""

    def __init__(self, aucs: dict[str, float], clock: list[float]) -> None:
        self.aucs, self.clock, self.tried = aucs, clock, []

    def cost(self, c: Candidate) -> Cost:
        self.clock[0] += 1.0
        return COSTS[c.model]

    def trial(self, c: Candidate, epochs: int) -> float:
        self.tried.append((c.model, epochs))
        self.clock[0] += epochs * 1125 * COSTS[c.model].train
        return self.aucs[c.model]


def _plan(budget: float, aucs: dict[str, float]) -> tuple[object, FakeCosts]:
    clock = [0.0]
    fake = FakeCosts(aucs, clock)
    p = plan(TrainConfig(), SHAPE, CANDS, fake, budget, clock=lambda: clock[0], n_sel=1125)
    return p, fake


def test_planner_picks_the_best_inner_val_candidate_and_fills_the_budget() -> None:
    p, fake = _plan(3600, {"resnet10t": 0.80, "resnet18": 0.86, "resnet34": 0.83})
    c = p.config  # type: ignore[attr-defined]
    assert c.model == "resnet18" and c.jobs == 1
    assert {m for m, _ in fake.tried} == {"resnet10t", "resnet18", "resnet34"}
    # successive halving: the second rung trains fewer candidates for twice the epochs
    rungs = sorted({e for _, e in fake.tried})
    assert rungs[0] == EPOCH_GRID[0] and all(b == 2 * a for a, b in itertools.pairwise(rungs))
    per_rung = [sum(1 for _, e in fake.tried if e == r) for r in rungs]
    assert per_rung == sorted(per_rung, reverse=True)
    left = 3600 - p.planning_seconds  # type: ignore[attr-defined]
    assert p.predicted_seconds <= FILL * left  # type: ignore[attr-defined]
    bigger = predicted_seconds(
        COSTS["resnet18"], SHAPE, epochs=_next(c.epochs), models=1, refit=True
    )
    assert c.epochs == EPOCH_GRID[-1] or bigger > FILL * left
    rec = p.to_dict()  # type: ignore[attr-defined]
    assert rec["chosen"]["model"] == "resnet18" and rec["trials"] and rec["reason"]
    assert set(rec["measured_seconds_per_epoch"]) == {c.name for c in CANDS}
    assert json.dumps(rec)


def _next(e: int) -> int:
    i = EPOCH_GRID.index(e)
    return EPOCH_GRID[min(i + 1, len(EPOCH_GRID) - 1)]


def test_planner_is_deterministic() -> None:
    aucs = {"resnet10t": 0.80, "resnet18": 0.80, "resnet34": 0.79}
    a, _ = _plan(1800, aucs)
    b, _ = _plan(1800, aucs)
    assert a.to_dict() == b.to_dict()  # type: ignore[attr-defined]
    assert a.config.model == "resnet10t"  # type: ignore[attr-defined]  # a tie keeps the cheaper


def test_short_budget_keeps_the_cheapest_without_searching() -> None:
    p, fake = _plan(50, {"resnet10t": 0.7, "resnet18": 0.9, "resnet34": 0.95})
    assert p.config.model == "resnet10t" and not fake.tried  # type: ignore[attr-defined]
    assert p.config.epochs in EPOCH_GRID and p.config.epochs < 10  # type: ignore[attr-defined]


def test_too_short_a_budget_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"time_budget of 20s is too short .* min needed"):
        _plan(20, {"resnet10t": 0.7, "resnet18": 0.9, "resnet34": 0.95})


def test_size_run_grows_with_the_budget_then_adds_models() -> None:
    cost = COSTS["resnet10t"]
    sizes = [size_run(cost, SHAPE, s) for s in (10, 60, 300, 1200, 5000)]
    assert sizes[0] is None
    runs = [s for s in sizes if s is not None]
    assert [(e, m) for e, m, _ in runs] == sorted((e, m) for e, m, _ in runs)
    assert runs[-1][0] == EPOCH_GRID[-1] and runs[-1][1] > 1
    for (_, _, t), budget in zip(runs, (60, 300, 1200, 5000), strict=True):
        assert t <= budget


def test_time_the_next_epoch_step_does_not_fit_buys_models_per_fold() -> None:
    cost = COSTS["resnet10t"]

    def t(e: int, m: int) -> float:
        return predicted_seconds(cost, SHAPE, epochs=e, models=m, refit=e >= 20)

    # 15 epochs x 2 models fit, 20 epochs (inner selection + refit) do not
    budget = (t(15, 2) + min(t(15, 3), t(20, 1))) / 2
    assert t(15, 2) < budget < min(t(15, 3), t(20, 1))
    assert size_run(cost, SHAPE, budget) == (15, 2, t(15, 2))
    assert size_run(cost, SHAPE, t(15, 1) + 1e-6) == (15, 1, t(15, 1))


def test_size_run_prices_the_refit_the_base_config_asks_for() -> None:
    cost = COSTS["resnet10t"]
    plain = predicted_seconds(cost, SHAPE, epochs=20, models=1, refit=False)
    assert predicted_seconds(cost, SHAPE, epochs=20, models=1, refit=True) > plain * 1.2
    # default: 20 epochs select + refit, which does not fit; without selection it does
    assert size_run(cost, SHAPE, plain * 1.01)[0] < 20  # type: ignore[index]
    no_select = TrainConfig(select_epochs=False)
    assert size_run(cost, SHAPE, plain * 1.01, no_select) == (20, 1, plain)
    assert size_run(cost, SHAPE, plain * 1.01, TrainConfig(refit=False)) == (20, 1, plain)


def test_candidates_upsample_only_small_caches() -> None:
    assert {c.image_size for c in candidates(64)} == {None, 32}
    assert {c.image_size for c in candidates(48)} == {None}
    assert {c.image_size for c in candidates(28)} == {None, 56}


# -- deadlines on a virtual clock ------------------------------------------------------------


def test_share_deadline_splits_what_is_left() -> None:
    assert share_deadline(100.0, 40.0, 3) == 60.0
    assert share_deadline(100.0, 40.0, 1) == 100.0
    assert share_deadline(100.0, 120.0, 2) == 100.0  # passed: stop at once
    with pytest.raises(ValueError, match="units_left"):
        share_deadline(100.0, 0.0, 0)


def _fit_context(
    run: RunDir, config: TrainConfig, deadline: Deadline | None
) -> tuple[FitContext, object]:
    ctx = load_context(run, config)
    split = fold_split(ctx.folds, 0, ctx.labels, ctx.groups, inner_val_fraction=0.25, seed=0)
    cache = ImageCache(run)
    fc = FitContext(
        config=config,
        labels=ctx.labels,
        n_classes=2,
        setup=resolve_device_setup(device="cpu", precision="fp32"),
        cache=cache,
        norm=cache.channel_stats(split.train, seed=0),
        deadline=deadline,
    )
    return fc, split


def test_fit_stops_cleanly_at_the_deadline(tiny_run: RunDir, fast_config: TrainConfig) -> None:
    ticks = itertools.count()  # one virtual second per clock reading (one per batch)
    cfg = fast_config.replace(epochs=6, batch_size=16, masked_variants=())
    fc, split = _fit_context(tiny_run, cfg, Deadline(at=7.0, clock=lambda: float(next(ticks))))
    res = fit_model(fc, split.train, seed=0, inner_val=split.inner_val)  # type: ignore[attr-defined]
    steps_per_epoch = len(split.train) // 16  # type: ignore[attr-defined]
    assert res.deadline_hit and len(res.history) < 6
    assert res.train_images == 8 * 16  # stopped after the 8th batch (clock readings 0..7)
    assert res.history[-1]["stopped_by_deadline"] and len(res.history) == -(-8 // steps_per_epoch)
    assert 1 <= res.best_epoch <= len(res.history)
    free = fit_model(
        _fit_context(tiny_run, cfg, None)[0],
        split.train,
        seed=0,  # type: ignore[attr-defined]
        inner_val=split.inner_val,
    )  # type: ignore[attr-defined]
    assert not free.deadline_hit and len(free.history) == 6


def test_run_deadline_is_shared_over_folds_and_skips_refits(
    tiny_run: RunDir, fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch costs one virtual second: training ends by the run's deadline (+1 step),
    each fold within its share, and a refit that would not fit is skipped."""
    from training import train_run

    clock = [1000.0]
    reads: list[float] = []

    def virtual() -> float:
        clock[0] += 1.0
        reads.append(clock[0])
        return clock[0]

    monkeypatch.setattr(deadline_mod, "now", virtual)
    cfg = fast_config.replace(
        epochs=10,
        batch_size=16,
        folds=2,
        select_epochs=True,
        refit=True,
        keep_selected=False,
        masked_variants=(),
        stop_at=1000.0 + 30.0,
    )
    summary = train_run(tiny_run, cfg)
    hist = json.loads((tiny_run.path / "train/history.json").read_text())["folds"]
    assert all(h["stopped_by_deadline"] for h in hist)
    assert max(reads) <= cfg.stop_at + 2  # the last check may be one step past, never more
    assert sum(r.train_images for r in summary.folds) <= 30 * 16
    assert all(h["refit_skipped_for_deadline"] for h in hist)
    assert summary.record["config"]["stop_at"] == cfg.stop_at
    assert np.isfinite(tiny_run.read_array("oof/pred_probs")).all()


# -- end to end (real, small) ---------------------------------------------------------------


@pytest.mark.slow
def test_time_budget_plans_on_fold_zero_training_rows_only(
    tiny_run: RunDir, fast_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes and search trials see only fold 0's training rows; the plan is recorded.

    The final run's size is pinned to 2 epochs (sizing is tested on the fake cost model
    above), so the test does not depend on this machine's speed."""
    import training.planner as planner

    ctx = load_context(tiny_run, fast_config)
    allowed = set(np.flatnonzero(ctx.folds != 0).tolist())  # fold 0's training rows
    seen: list[np.ndarray] = []
    real_cost, real_trial = planner._MeasuredCosts.cost, planner._MeasuredCosts.trial

    def spy_cost(self, c):  # type: ignore[no-untyped-def]
        seen.extend([self.split.train, self.split.inner_val])
        return real_cost(self, c)

    def spy_trial(self, c, e):  # type: ignore[no-untyped-def]
        seen.extend([self.split.train, self.split.inner_val])
        return real_trial(self, c, e)

    monkeypatch.setattr(planner._MeasuredCosts, "cost", spy_cost)
    monkeypatch.setattr(planner._MeasuredCosts, "trial", spy_trial)
    monkeypatch.setattr(planner, "size_run", lambda cost, shape, seconds, config: (2, 1, 1.0))
    monkeypatch.setattr(planner, "EPOCH_GRID", (1, 2))
    cfg = fast_config.replace(masked_variants=(), threads=1)
    summary = train_within_budget(
        tiny_run, cfg, "10m", architectures=("test_resnet", "test_efficientnet")
    )
    assert seen and all(set(r.tolist()) <= allowed for r in seen)
    rec = tiny_run.read_run_json()["train"]["budget"]
    assert rec["budget_seconds"] == 600 and rec["chosen"]["epochs"] == 2
    # the 32 px cache: both architectures at 32 and 64 px, all in the first rung
    assert {t["candidate"] for t in rec["trials"]} == {
        f"{m}@{s}" for m in ("test_resnet", "test_efficientnet") for s in ("cache", 64)
    }
    last_rung = [t for t in rec["trials"] if t["epochs"] == rec["trials"][-1]["epochs"]]
    best = max(last_rung, key=lambda t: t["inner_val_auc"])["inner_val_auc"]
    chosen = f"{rec['chosen']['model']}@{rec['chosen']['image_size'] or 'cache'}"
    assert any(t["candidate"] == chosen and t["inner_val_auc"] == best for t in last_rung)
    assert all(v > 0 for v in rec["measured_seconds_per_epoch"].values())
    assert summary.record["config"]["stop_at"] == rec["training_deadline_unix"]
    assert summary.record["config"]["model"] == rec["chosen"]["model"]
