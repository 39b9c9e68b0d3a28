"""Budget-aware training defaults: the settings that depend on how long training runs.

The regularisers and the selection machinery of :func:`training.loop.fit_model`
pay off only when training is long enough: a weight average needs many updates
to average over, a warm-up is wasted on a 3-epoch schedule, mixup and strong
augmentation slow down fitting (the best epochs come later), and a refit
doubles the cost for a model that, at a few epochs, is still under-fitted
anyway. Tuned once for 40 epochs on BreastMNIST, the fixed values lost to a
bare timm loop at 3 and 10 epochs (issue 21; measurements in
``bench/README.md``, "Budget").

:func:`budget_defaults` derives all of them from the number of epochs (and
the optimizer steps per epoch, i.e. the dataset size) in one place;
:meth:`training.config.TrainConfig.resolved` fills the fields left at
``None`` ("auto") with it. At 40 epochs it returns the values tuned on
BreastMNIST before, so that regime is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from training.splits import HOLDOUT_FOLD

__all__ = [
    "AUTO_FIELDS",
    "BudgetDefaults",
    "budget_defaults",
    "planned_steps_per_epoch",
    "resolve_for_context",
]

#: Epochs from which the long-training regime (the 40-epoch BreastMNIST tuning) applies
#: in full.
LONG_EPOCHS = 40

#: Below this many epochs the run is "short": no mixup, no refit, no weight average.
SHORT_EPOCHS = 10

#: A run with fewer optimizer steps in all gets no weight average (it would average a
#: handful of updates). BreastMNIST at 40 epochs has about 440, and keeps its average.
MIN_EMA_STEPS = 200


@dataclass(frozen=True)
class BudgetDefaults:
    """Budget-dependent training settings (see :func:`budget_defaults`).

    Attributes
    ----------
    ema_epochs : float
        Weight-average horizon in epochs (0 = off).
    warmup_epochs : float
        Linear learning-rate warm-up, in epochs.
    mixup : float
        Mixup ``alpha`` (0 = off).
    augment_probability : float
        Probability that a training image is augmented.
    select_epochs : bool
        Choose the epoch count on the inner split (else: train on all the fold's
        training rows for exactly ``epochs`` epochs).
    refit : bool
        Refit on all training rows after the inner split chose the epoch count.
    keep_selected : bool
        Average the selected model with the refit.
    """

    ema_epochs: float
    warmup_epochs: float
    mixup: float
    augment_probability: float
    select_epochs: bool
    refit: bool
    keep_selected: bool

    def to_dict(self) -> dict[str, float | bool]:
        """JSON-ready dict."""
        return asdict(self)


#: ``TrainConfig`` fields whose ``None`` means "derive from the budget".
AUTO_FIELDS = tuple(BudgetDefaults.__dataclass_fields__)


def _ramp(epochs: int, lo: int, hi: int) -> float:
    """0 at ``lo`` epochs or fewer, 1 at ``hi`` or more, linear in between."""
    return min(1.0, max(0.0, (epochs - lo) / (hi - lo)))


def budget_defaults(epochs: int, steps_per_epoch: int | None = None) -> BudgetDefaults:
    """The budget-dependent defaults for a schedule of ``epochs`` epochs.

    Rules (``r = clip((epochs - 10) / 30, 0, 1)``: 0 up to 10 epochs, 1 from 40):

    * ``ema_epochs = 3 r``: the 3-epoch weight average of the 40-epoch tuning,
      shrinking to none at 10 epochs or fewer, where it averages in weights
      from too early in a short schedule. With fewer than 200 optimizer steps
      in the whole run (small data) it is off too: the average is then over
      a handful of updates only.
    * ``warmup_epochs = 0.05 epochs`` (2 at 40 epochs as before; 0.15 at 3).
    * ``mixup = 0.2 r`` and ``augment_probability = 0.3 + 0.6 r``: augmentation
      regularises long runs but slows fitting in short ones, so its strength
      grows with the schedule; a mild 30 % remains in short runs.
    * ``select_epochs = refit = keep_selected = epochs >= 20``: selecting the
      epoch count on an inner split and then refitting costs up to twice the
      training, and in short runs there is nothing to select (the cosine
      schedule's last epoch is the best), so a short run trains each fold's
      model once, on all the fold's training rows (inner split included), for
      exactly ``epochs`` epochs, like a bare loop.

    Parameters
    ----------
    epochs : int
        Epochs of the schedule (>= 1).
    steps_per_epoch : int, optional
        Optimizer steps per epoch (training rows // batch size); when given, a
        run of fewer than 200 steps in all gets no weight average.

    Returns
    -------
    BudgetDefaults

    Raises
    ------
    ValueError
        When ``epochs`` < 1 or ``steps_per_epoch`` < 1.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1; got {epochs!r}")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1; got {steps_per_epoch!r}")
    r = _ramp(epochs, SHORT_EPOCHS, LONG_EPOCHS)
    ema = 3.0 * r
    if steps_per_epoch is not None and epochs * steps_per_epoch < MIN_EMA_STEPS:
        ema = 0.0
    long_enough = epochs >= 20
    return BudgetDefaults(
        ema_epochs=round(ema, 3),
        warmup_epochs=round(0.05 * epochs, 3),
        mixup=round(0.2 * r, 3),
        augment_probability=round(0.3 + 0.6 * r, 3),
        select_epochs=long_enough,
        refit=long_enough,
        keep_selected=long_enough,
    )


# ``config`` / ``ctx`` below are a ``training.config.TrainConfig`` and a
# ``training.run_context.RunContext``; not imported here, as ``TrainConfig.resolved``
# imports this module.
def planned_steps_per_epoch(n_cv_rows: int, config: Any) -> int:
    """Optimizer steps per epoch of a fold's selection pass, from the CV row count.

    The rows a selection pass trains on are the fold's training rows less the
    inner split: about ``n_cv_rows * (folds - 1) / folds * (1 - inner_val_fraction)``;
    :func:`training.loop.fit_model` drops the last partial batch.

    Parameters
    ----------
    n_cv_rows : int
        Rows in the K folds (holdout-split rows excluded).
    config : TrainConfig

    Returns
    -------
    int
        >= 1.
    """
    n_fit = math.floor(
        n_cv_rows * (config.folds - 1) / config.folds * (1.0 - config.inner_val_fraction)
    )
    return max(1, n_fit // config.batch_size)


def resolve_for_context(config: Any, ctx: Any) -> Any:
    """``config.resolved(...)`` with the step count of the run in ``ctx``.

    The same for every fold of a run (it depends on the CV row count, not on
    the fold), so :func:`training.train_run` and :func:`training.train_fold`
    agree on the config (and its hash).
    """
    n_cv = int(np.sum(ctx.folds != HOLDOUT_FOLD))
    return config.resolved(planned_steps_per_epoch(n_cv, config))
