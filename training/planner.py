"""``--time-budget``: choose a training configuration that fits a wall-time budget.

The no-code flow's AutoML step: a user gives data and a budget ("15m"), not
hyper-parameters. :func:`train_within_budget` plans, then trains:

1. **Probe** (:func:`measure_costs`): for every candidate of a small documented
   set (:data:`ARCHITECTURES` x input sizes, :func:`candidates`), one short
   timed training pass and one timed scoring pass on fold 0's *training* rows
   give the seconds per training image and per scored image on this machine,
   now.
2. **Search** (:func:`plan`): successive halving (Jamieson & Talwalkar,
   AISTATS 2016) over the candidates that fit the budget at all, within a
   quarter of it: each rung trains every remaining candidate for ``r`` epochs on
   fold 0's inner-split training rows and scores it on fold 0's *inner
   validation* rows (AUC); the better half goes on to ``2 r`` epochs, until one
   is left or the next rung does not fit. Only the training rows of fold 0
   are used: no held-out fold (nor holdout split) is ever looked at.
3. **Size** (:func:`size_run`): the winner gets the most epochs from
   :data:`EPOCH_GRID` whose predicted cost (:func:`predicted_seconds`, the
   measured costs times the images each pass processes, refit and masked
   re-scoring included) fits 90 % of what is left; with time to spare at the
   epoch count chosen, 2 or 3 models per fold. The budget-dependent settings
   then follow :func:`training.budget.budget_defaults` for those epochs.
4. **Deadline**: ``TrainConfig.stop_at`` is set so that training ends before
   the budget less the predicted scoring of the last fold; every fold gets an
   equal share of the time left (:mod:`training.deadline`) and a pass that
   reaches its share stops cleanly, so an underestimated cost shortens
   training instead of overrunning the budget (target: under 10 % overrun).

Everything the planner measured, tried and chose, and why, is recorded under
``run.json['train']['budget']``.

Why not optuna: the space is a handful of discrete candidates, the resource
is wall time shared with the final run rather than a trial count, and the
decision must be reproducible; a 30-line successive halving on a fixed grid
does that with no sampler state. The choice is reproducible for a fixed
seed, thread count and machine speed: the search ranks by inner-validation
AUC (deterministic), and the epoch count comes from a coarse grid, so timing
noise changes it only near a grid boundary.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from audit.metrics import auc_score
from audit.rundir import RunDir
from training.config import TrainConfig
from training.splits import FoldSplit

__all__ = [
    "ARCHITECTURES",
    "EPOCH_GRID",
    "Candidate",
    "Cost",
    "Plan",
    "candidates",
    "parse_duration",
    "plan",
    "predicted_seconds",
    "refits",
    "size_run",
    "train_within_budget",
]

_log = logging.getLogger(__name__)

#: Architectures the planner chooses from, cheapest first: timm ResNets trained from
#: scratch, which train well on small grayscale images on a CPU (``resnet10t`` is the
#: training default; ``resnet18`` the MedMNIST reference; ``resnet34`` twice its depth).
ARCHITECTURES = ("resnet10t", "resnet18", "resnet34")

#: Epoch counts the planner chooses from (a coarse grid, so timing noise rarely
#: changes the choice).
EPOCH_GRID = (3, 5, 8, 10, 15, 20, 30, 40, 60)

#: Most models per fold the planner trains when the top of the grid leaves time over.
MAX_MODELS_PER_FOLD = 3

#: Share of the budget the search may spend.
SEARCH_FRACTION = 0.25

#: Share of the time left that the predicted cost of the final run may take.
FILL = 0.9

#: Seconds kept for assembling the run's artifacts and the summary after the last fold.
ASSEMBLY_SECONDS = 5.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``"90s"``, ``"2m"``, ``"15m"``, ``"1h"``, ``"1h30m"``.

    A bare number is seconds. The result must be at least 10 seconds.

    Parameters
    ----------
    text : str

    Returns
    -------
    float

    Raises
    ------
    ValueError
        One line naming ``time_budget`` and the accepted forms.
    """
    raw = str(text).strip().lower().replace(" ", "")
    m = _DURATION.match(raw) if raw else None
    if m is None or not any(m.groups()):
        raise ValueError(
            f"time_budget must be a duration such as 90s, 2m, 15m, 1h or 1h30m; got {text!r}"
        )
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    seconds = h * 3600 + mi * 60 + s
    if seconds < 10:
        raise ValueError(f"time_budget must be at least 10s; got {text!r}")
    return seconds


@dataclass(frozen=True)
class Candidate:
    """One architecture at one input size (``image_size=None``: the cache size)."""

    model: str
    image_size: int | None

    @property
    def name(self) -> str:
        """``model@size`` (``cache`` for the cache size)."""
        return f"{self.model}@{self.image_size or 'cache'}"


def candidates(cache_size: int, architectures: Sequence[str] = ARCHITECTURES) -> list[Candidate]:
    """The candidate set: every architecture at the cache size, and at one other size.

    Small caches (MedMNIST's 28 px) lose most of their resolution in a ResNet
    stem, so up to 32 px the other size is twice the cache size; from 64 px on
    it is half (a quarter of the compute), the option that lets a short budget
    train at all on a slow machine.
    """
    other = 2 * cache_size if cache_size <= 32 else cache_size // 2 if cache_size >= 64 else None
    sizes: list[int | None] = [None] + ([other] if other else [])
    return [Candidate(a, s) for s in sizes for a in architectures]


@dataclass(frozen=True)
class Cost:
    """Measured cost of one candidate on this machine (seconds per image)."""

    train: float
    score: float


class CostModel(Protocol):
    """What :func:`plan` needs to price and to try candidates (faked in tests)."""

    def cost(self, candidate: Candidate) -> Cost: ...

    def trial(self, candidate: Candidate, epochs: int) -> float: ...


@dataclass(frozen=True)
class RunShape:
    """Row counts of a run that the cost prediction needs.

    Attributes
    ----------
    n_cv : int
        Rows in the K folds.
    n_holdout : int
        Holdout-split rows (scored by every fold).
    folds : int
    inner_val_fraction : float
    n_variants : int
        Masked re-scoring variants.
    """

    n_cv: int
    n_holdout: int
    folds: int
    inner_val_fraction: float
    n_variants: int


def predicted_seconds(
    cost: Cost, shape: RunShape, *, epochs: int, models: int, refit: bool
) -> float:
    """Predicted wall time of a whole run (all folds) from the measured per-image costs.

    Per fold and model, with ``refit`` (the long-run recipe: selection on the inner
    split, then a refit): ``epochs`` of training on the selection rows with one
    inner-validation scoring per epoch, the refit (``epochs`` epochs on all the
    fold's training rows, an upper bound: it stops at the chosen epoch); without:
    ``epochs`` on all the fold's training rows. Then the scoring of the
    in-sample, out-of-fold (original and masked) and holdout rows by every kept
    model (two per model with a refit).
    """
    n_fit = shape.n_cv * (shape.folds - 1) / shape.folds
    n_inner = n_fit * shape.inner_val_fraction
    n_sel = n_fit - n_inner
    n_oof = shape.n_cv / shape.folds
    per_model = epochs * n_fit * cost.train
    kept = 1
    if refit:
        per_model += epochs * (n_sel * cost.train + n_inner * cost.score)
        kept = 2
    scored = n_fit + (n_oof + shape.n_holdout) * (1 + shape.n_variants)
    per_fold = models * (per_model + kept * scored * cost.score)
    return shape.folds * per_fold


def refits(config: TrainConfig, epochs: int) -> bool:
    """Whether ``config`` trained for ``epochs`` epochs refits (its own or the auto value)."""
    return bool(config.replace(epochs=epochs).resolved().refit)


def size_run(
    cost: Cost, shape: RunShape, seconds: float, config: TrainConfig | None = None
) -> tuple[int, int, float] | None:
    """The most epochs of :data:`EPOCH_GRID`, then the most models per fold, that fit ``seconds``.

    Epochs come first (a longer schedule is the larger gain while a model is
    still under-trained); the time the next grid step would not fit in (the
    grid is coarse, and from 20 epochs on the refit doubles the cost) then
    buys up to :data:`MAX_MODELS_PER_FOLD` models per fold, whose averaged
    probabilities are a deep ensemble (Lakshminarayanan et al., NeurIPS 2017).

    Parameters
    ----------
    cost : Cost
    shape : RunShape
    seconds : float
        Time the run may take.
    config : TrainConfig, optional
        The base settings (default ``TrainConfig()``): whether a schedule refits
        follows its ``refit`` / ``select_epochs`` (:func:`refits`).

    Returns
    -------
    tuple of (int, int, float) or None
        ``(epochs, models_per_fold, predicted seconds)``; ``None`` when even
        the shortest run does not fit.
    """
    base = config if config is not None else TrainConfig()
    best = None
    for e in EPOCH_GRID:
        t = predicted_seconds(cost, shape, epochs=e, models=1, refit=refits(base, e))
        if t <= seconds:
            best = (e, 1, t)
    if best is not None:
        e, refit = best[0], refits(base, best[0])
        for m in range(2, MAX_MODELS_PER_FOLD + 1):
            t = predicted_seconds(cost, shape, epochs=e, models=m, refit=refit)
            if t <= seconds:
                best = (e, m, t)
    return best


@dataclass
class Plan:
    """What the planner measured, tried and chose (recorded in ``run.json``)."""

    budget_seconds: float
    config: TrainConfig
    costs: dict[str, dict[str, float]]
    trials: list[dict[str, Any]] = field(default_factory=list)
    predicted_seconds: float = 0.0
    planning_seconds: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        c = self.config
        return {
            "budget_seconds": self.budget_seconds,
            "chosen": {
                "model": c.model,
                "image_size": c.image_size,
                "epochs": c.epochs,
                "models_per_fold": c.models_per_fold,
                "refit": refits(c, c.epochs),
            },
            "measured_seconds_per_image": self.costs,
            "measured_seconds_per_epoch": {
                name: v.get("seconds_per_epoch") for name, v in self.costs.items()
            },
            "trials": self.trials,
            "predicted_train_seconds": self.predicted_seconds,
            "planning_seconds": self.planning_seconds,
            "training_deadline_unix": c.stop_at,
            "reason": self.reason,
            "search": "successive halving on fold 0's inner validation split (AUC); "
            "held-out folds and the holdout split untouched",
        }


def plan(
    base: TrainConfig,
    shape: RunShape,
    cands: Sequence[Candidate],
    model: CostModel,
    budget_seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    n_sel: int,
    spent: float = 0.0,
) -> Plan:
    """Choose candidate, epochs and models per fold for ``budget_seconds`` (see the module docstring).

    Parameters
    ----------
    base : TrainConfig
        Settings the planner keeps (folds, seed, batch size, augmentation ...).
    shape : RunShape
        Row counts of the run.
    cands : sequence of Candidate
        Cheapest first.
    model : CostModel
        Measures costs and runs search trials (the real one trains on fold 0's
        inner split; tests pass a fake).
    budget_seconds : float
        The whole budget, planning included.
    clock : callable
        Monotonic seconds (injectable for tests).
    n_sel : int
        Rows a search trial trains on (fold 0's inner-split training rows).
    spent : float
        Seconds of the budget already spent before this call (loading the run).

    Returns
    -------
    Plan

    Raises
    ------
    ValueError
        When even the cheapest candidate cannot train the shortest schedule
        in the budget (the message names the budget it would need).
    """
    t0 = clock()
    costs = {c: model.cost(c) for c in cands}
    cands = sorted(cands, key=lambda c: costs[c].train)  # cheapest first (stable)
    per_epoch = {c: shape.n_cv * (shape.folds - 1) / shape.folds * costs[c].train for c in cands}
    cost_record = {
        c.name: {
            "train": costs[c].train,
            "score": costs[c].score,
            "seconds_per_epoch": per_epoch[c],
        }
        for c in cands
    }

    def used() -> float:
        return spent + (clock() - t0)

    def left() -> float:
        return budget_seconds - used()

    # Candidates that could run the shortest schedule in the time left (a search only
    # runs when a rung fits its share, see below).
    feasible = [c for c in cands if size_run(costs[c], shape, FILL * left(), base) is not None]
    trials: list[dict[str, Any]] = []
    if not feasible:
        need = predicted_seconds(
            costs[cands[0]],
            shape,
            epochs=EPOCH_GRID[0],
            models=1,
            refit=refits(base, EPOCH_GRID[0]),
        )
        need = need / FILL + used()
        raise ValueError(
            f"time_budget of {budget_seconds:.0f}s is too short for {shape.folds} folds x "
            f"{EPOCH_GRID[0]} epochs of {cands[0].model} on this machine (about "
            f"{math.ceil(need / 60)} min needed); give a longer budget or fewer folds"
        )
    search_end = budget_seconds * SEARCH_FRACTION
    alive = list(feasible)
    reason = ""
    rung_epochs = EPOCH_GRID[0]
    scores: dict[Candidate, float] = {}
    if len(alive) == 1:
        reason = f"only {alive[0].name} fits the budget"
    while len(alive) > 1:
        rung_cost = sum(rung_epochs * n_sel * costs[c].train * 1.3 for c in alive)
        if used() + rung_cost > search_end:
            if not scores:
                reason = (
                    f"no time to compare candidates (a {rung_epochs}-epoch rung needs "
                    f"~{rung_cost:.0f}s of a {search_end:.0f}s search share): the "
                    "cheapest is kept"
                )
                alive = alive[:1]
            break
        scores = {}
        for c in alive:
            s0 = clock()
            auc = model.trial(c, rung_epochs)
            scores[c] = auc
            trials.append(
                {
                    "candidate": c.name,
                    "epochs": rung_epochs,
                    "inner_val_auc": auc,
                    "seconds": clock() - s0,
                }
            )
        # Stable ranking: ties keep the cheaper candidate.
        ranked = sorted(alive, key=lambda c: -scores[c] if np.isfinite(scores[c]) else math.inf)
        alive = ranked[: max(1, len(ranked) // 2)]
        rung_epochs *= 2
    winner = alive[0]  # ranked best first
    if scores and not reason:
        reason = (
            f"{winner.name} had the best inner-validation AUC ({scores[winner]:.3f}) in "
            f"the last rung of the search"
        )
    sized = size_run(costs[winner], shape, FILL * max(left(), 0.0), base)
    if sized is None:  # the search took longer than planned: fall back to the cheapest
        winner = cands[0]
        shortest = (EPOCH_GRID[0], 1, 0.0)
        sized = size_run(costs[winner], shape, FILL * max(left(), 0.0), base) or shortest
        reason += "; the search overran, so the cheapest candidate at the shortest schedule"
    epochs, models, predicted = sized
    reason += (
        f"; {epochs} epochs x {models} model(s) per fold predicted at {predicted:.0f}s of "
        f"the {max(left(), 0.0):.0f}s left"
    )
    config = base.replace(
        model=winner.model,
        image_size=winner.image_size,
        epochs=epochs,
        models_per_fold=models,
        jobs=1,
    )
    return Plan(
        budget_seconds=budget_seconds,
        config=config,
        costs=cost_record,
        trials=trials,
        predicted_seconds=predicted,
        planning_seconds=used(),
        reason=reason,
    )


class _MeasuredCosts:
    """The real cost model: timed passes and search trials on fold 0's training rows."""

    def __init__(self, run: RunDir, base: TrainConfig, split: FoldSplit) -> None:
        from training.dataset import ImageCache
        from training.device import resolve_device_setup
        from training.run_context import load_context

        self.base = base
        self.split = split
        self.ctx = load_context(run, base)
        self.cache = ImageCache(run)
        self.setup = resolve_device_setup(device=base.device, precision=base.precision)
        self.norm = self.cache.channel_stats(split.train, seed=base.seed)

    def _fc(self, config: TrainConfig) -> Any:
        from training.loop import FitContext

        return FitContext(
            config=config,
            labels=self.ctx.labels,
            n_classes=len(self.ctx.classes),
            setup=self.setup,
            cache=self.cache,
            norm=self.norm,
        )

    def cost(self, candidate: Candidate) -> Cost:
        from training.loop import fit_model
        from training.predict import predict_rows

        # Two short epochs of a few batches: the second one, without the first steps'
        # one-off costs (allocation, kernel selection), is the one timed.
        cfg = self.base.replace(
            model=candidate.model, image_size=candidate.image_size, epochs=2, quiet=True, patience=0
        )
        n = min(len(self.split.train), 4 * cfg.batch_size)
        fit = fit_model(
            self._fc(cfg), self.split.train[:n], seed=self.base.seed, desc=f"probe {candidate.name}"
        )
        last = fit.history[-1]
        train = last["train_seconds"] / max(fit.train_images / len(fit.history), 1)
        score_rows = self.split.inner_val[: 4 * cfg.batch_size]
        timings = []
        for _ in range(2):
            t = time.perf_counter()
            predict_rows(
                fit.net,
                self.cache,
                score_rows,
                setup=self.setup,
                norm=self.norm,
                image_size=cfg.image_size,
                batch_size=2 * cfg.batch_size,
            )
            timings.append(time.perf_counter() - t)
        return Cost(train=train, score=timings[-1] / max(len(score_rows), 1))

    def trial(self, candidate: Candidate, epochs: int) -> float:
        from training.loop import fit_model
        from training.predict import predict_rows, softmax

        cfg = self.base.replace(
            model=candidate.model,
            image_size=candidate.image_size,
            epochs=epochs,
            quiet=True,
            patience=0,
        )
        fit = fit_model(
            self._fc(cfg),
            self.split.train,
            seed=self.base.seed,
            desc=f"search {candidate.name} {epochs} epochs",
        )
        logits, _ = predict_rows(
            fit.net,
            self.cache,
            self.split.inner_val,
            setup=self.setup,
            norm=self.norm,
            image_size=cfg.image_size,
            batch_size=2 * cfg.batch_size,
        )
        return float(auc_score(self.ctx.labels[self.split.inner_val], softmax(logits)))


def train_within_budget(
    run_dir: RunDir | str,
    config: TrainConfig,
    time_budget: str | float,
    *,
    architectures: Sequence[str] = ARCHITECTURES,
) -> Any:
    """Plan a configuration that fits ``time_budget``, then train it (:func:`training.train_run`).

    Parameters
    ----------
    run_dir : RunDir or path
        An ingested run directory.
    config : TrainConfig
        Base settings; ``model``, ``image_size``, ``epochs``, ``models_per_fold``,
        ``jobs`` and ``stop_at`` are chosen by the planner, the budget-dependent
        "auto" fields follow the chosen epochs unless set.
    time_budget : str or float
        A duration (:func:`parse_duration`) or seconds.
    architectures : sequence of str
        The timm architectures to choose from (default :data:`ARCHITECTURES`).

    Returns
    -------
    training.cv.TrainSummary
        ``record['budget']`` (also in ``run.json['train']['budget']``) holds the plan.

    Raises
    ------
    ValueError
        Bad budget, or a budget too short for the shortest schedule.
    """
    from training.cv import train_run
    from training.reproducibility import deterministic, torch_threads
    from training.run_context import load_context
    from training.splits import HOLDOUT_FOLD, fold_split

    wall0, mono0 = time.time(), time.monotonic()
    seconds = parse_duration(time_budget) if isinstance(time_budget, str) else float(time_budget)
    if not seconds >= 10:
        raise ValueError(f"time_budget must be at least 10s; got {time_budget!r}")
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if config.mode != "finetune":
        raise ValueError("time_budget plans fine-tuning; mode='linear-probe' has nothing to plan")
    ctx = load_context(run, config)
    split = fold_split(
        ctx.folds,
        0,
        ctx.labels,
        ctx.groups,
        inner_val_fraction=config.inner_val_fraction,
        seed=config.seed,
    )
    shape = RunShape(
        n_cv=int(np.sum(ctx.folds != HOLDOUT_FOLD)),
        n_holdout=int(np.sum(ctx.folds == HOLDOUT_FOLD)),
        folds=config.folds,
        inner_val_fraction=config.inner_val_fraction,
        n_variants=len(config.masked_variants),
    )
    cache_size = int(run.read_array("images", mmap=True).shape[-1])
    cands = candidates(cache_size, architectures)
    with torch_threads(config.threads):
        costs = _MeasuredCosts(run, config.replace(quiet=True), split)
        with deterministic(costs.setup):
            p = plan(
                config,
                shape,
                cands,
                costs,
                seconds,
                n_sel=len(split.train),
                spent=time.monotonic() - mono0,
            )
    # Training must end early enough for the last fold's scoring and the assembly.
    last_scoring = (
        predicted_seconds(
            Cost(0.0, p.costs[Candidate(p.config.model, p.config.image_size).name]["score"]),
            shape,
            epochs=p.config.epochs,
            models=p.config.models_per_fold,
            refit=refits(p.config, p.config.epochs),
        )
        / shape.folds
    )
    stop_at = wall0 + seconds - 1.5 * last_scoring - ASSEMBLY_SECONDS
    p.config = p.config.replace(stop_at=stop_at)
    p.planning_seconds = time.monotonic() - mono0
    _log.info("time budget %.0fs: %s", seconds, p.reason)
    return train_run(run, p.config, extra_record={"budget": p.to_dict()})
