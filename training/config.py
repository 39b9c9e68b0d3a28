"""Training configuration: one frozen dataclass with documented defaults.

:class:`TrainConfig` is the single description of a training run. It is built
from CLI flags (``medaudit train``) or a TOML file in :mod:`medaudit` only, is
recorded in ``run.json`` through :meth:`TrainConfig.to_dict`, and can be read
back with :meth:`TrainConfig.from_dict`.

Where a default was tuned, it was chosen by out-of-fold AUC on real data
(``bench/bench_breastmnist.py --tune``), never by a test split; the
measurements behind each choice are in ``bench/README.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from training.messages import check_not_a_download

__all__ = [
    "ClassWeighting",
    "DeviceName",
    "Flips",
    "Mode",
    "Precision",
    "StemPool",
    "TrainConfig",
]

Precision = Literal["auto", "fp32", "bf16", "fp16"]
DeviceName = Literal["auto", "cpu", "cuda"]
Mode = Literal["finetune", "linear-probe"]
Flips = Literal["none", "horizontal", "vertical", "both"]
ClassWeighting = Literal["balanced", "none", "sampler"]
StemPool = Literal["auto", "keep", "drop"]

#: Fields that change how a run is executed but not what it computes; they are
#: left out of :meth:`TrainConfig.config_hash` so a resumed run may change them.
_EXECUTION_ONLY = frozenset({"jobs", "threads", "num_workers", "quiet", "stop_at"})

#: Budget-dependent fields: ``None`` = derived by :func:`training.budget.budget_defaults`.
_AUTO = ("ema_epochs", "warmup_epochs", "mixup", "augment_probability", "select_epochs", "refit",
         "keep_selected")

#: Names of the masked re-scoring variants (see :mod:`training.masking`).
_KNOWN_VARIANTS = ("center_masked", "border_only", "corners_masked")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Parameters
    ----------
    model : str
        Any timm architecture name (``timm.list_models()``). Default
        ``"resnet10t"`` from scratch: timm's ResNet-10-T (one basic block per
        stage, a three-convolution stem, 4.9 M parameters against ResNet-18's
        11.2 M), which trains faster than ResNet-18 and was not less accurate
        on small medical datasets. ``"resnet18"`` is the MedMNIST v2 reference
        architecture, for comparisons with published figures. Weights are
        never downloaded.
    folds : int
        Number of patient-grouped cross-validation folds (>= 2).
    epochs : int
        Maximum epochs per fold (early stopping may end a fold sooner).
    batch_size : int
        Training batch size; evaluation uses twice this. Small batches suit
        small datasets: they need the extra optimizer steps.
    lr : float
        Peak AdamW learning rate of the warmup + cosine schedule.
    weight_decay : float
        AdamW decoupled weight decay.
    warmup_epochs : float or None
        Linear warm-up epochs before the cosine decay (may be fractional: it
        is rounded to optimizer steps). ``None`` (default): derived from
        ``epochs`` by :func:`training.budget.budget_defaults` (5 % of the
        schedule, 2 at 40 epochs), like every field documented "auto" below;
        :meth:`resolved` fills them in.
    image_size : int or None
        Side of the square model input; ``None`` uses the cache size. Images are
        resized on the fly (bilinear, antialiased when shrinking).
    stem_pool : {'keep', 'drop', 'auto'}
        The stem max-pool of ResNet-style models (timm ``maxpool``): ``keep``
        (default); ``drop`` it (twice the spatial resolution in every stage, no
        parameter changes, several times the compute per step); or ``auto``:
        drop it when the model input side is at most 64 px and no pretrained
        weights are loaded (:func:`training.models.resolve_stem_pool`).
        Dropping it was not a reliable accuracy gain for its cost, hence
        ``keep``.
    precision : {'auto', 'fp32', 'bf16', 'fp16'}
        ``auto``: CUDA mixed precision (bf16 when supported, else fp16) on a
        GPU; on a CPU, bf16 autocast + channels-last when the processor has native
        bf16 (AVX512-BF16 / AMX), else fp32. ``fp32`` forces full precision.
    device : {'auto', 'cpu', 'cuda'}
        ``auto`` picks CUDA when available.
    seed : int
        Seed of the fold assignment, the inner split, initialisation,
        augmentation and batch order.
    mode : {'finetune', 'linear-probe'}
        ``finetune`` trains every layer; ``linear-probe`` embeds all images once
        with the frozen backbone and fits one logistic regression per fold.
    pretrained_weights : Path or None
        Local weights file (state dict or timm / Lightning checkpoint) to start
        from. Nothing is ever downloaded.
    holdout_split : str or None
        Value of the manifest ``split`` column whose rows are kept out of the
        K folds and scored by the fold ensemble (fold ``-1``), e.g. ``"test"``.
    flips : {'none', 'horizontal', 'vertical', 'both'}
        Random flips allowed in augmentation. Default ``'none'``: flipping a
        chest X-ray swaps laterality (situs, markers), so it is opt-in.
    rotate_degrees : float
        Maximum absolute random rotation (small affine).
    scale_range : float
        Random zoom in ``[1 - scale_range, 1 + scale_range]``.
    translate_fraction : float
        Maximum random shift as a fraction of the image side.
    brightness : float
        Maximum additive intensity shift (images in ``[0, 1]``).
    contrast : float
        Maximum relative contrast change around the image mean.
    augment_probability : float or None
        Probability that a training image is augmented at all. ``None``: auto
        (0.3 in runs of up to 10 epochs, rising to 0.9 at 40).
    mixup : float or None
        ``None``: auto (off up to 10 epochs, rising to 0.2 at 40). Otherwise the
        ``alpha`` of mixup (:func:`training.augment.mixup`): each training batch
        is blended with a shuffled copy of itself with a weight drawn from
        ``Beta(alpha, alpha)``, and the loss mixes both labels; ``0`` = off.
        A regulariser for small datasets: the best epochs come later, so
        training takes longer, and it needs that longer training (short runs
        under-fit with it, hence the auto value).
    class_weighting : {'balanced', 'none', 'sampler'}
        Class-imbalance handling: inverse-frequency weighted loss, nothing, or a
        class-balanced sampler. With ``balanced`` or ``sampler`` the log class
        prior of the training rows is added back to the logits that are written
        (logit adjustment, Menon et al., ICLR 2021), so ``pred_probs`` refer to
        the training prevalence and stay usable by calibration checks.
    inner_val_fraction : float
        Fraction of the training patients carved out (grouped, stratified) as
        the inner validation set for early stopping; never the fold's
        out-of-fold rows.
        With ``refit`` the final model is trained on these rows too, so a
        larger inner split costs no training data, only makes the epoch choice
        less noisy.
    ema_epochs : float or None
        Horizon, in epochs, of the exponential moving average of the weights
        that is evaluated, early-stopped and kept (``0`` = no averaging).
        ``None``: auto (off up to 10 epochs or under 200 optimizer steps,
        rising to 3 at 40 epochs).
    patience : int
        Early-stopping patience in epochs on the inner-validation loss; ``0``
        disables early stopping (the best inner-validation epoch is still
        restored). A fold never stops before half of ``epochs`` (nor before
        ``warmup_epochs + patience``): the first epochs at a high learning rate
        are too noisy on a small inner split to decide anything. The restored
        weights are the best inner-validation-loss epoch from the second
        quarter of the schedule on: earlier, under-trained weights with
        near-uniform outputs can win on log loss against a better but more
        confident model.
    select_epochs : bool or None
        Choose each fold's epoch count on the inner split (early stopping,
        best epoch; then ``refit``). ``False`` trains each fold's model once,
        on all the fold's training rows (inner split included), for exactly
        ``epochs`` epochs and keeps the last weights: in a short cosine
        schedule there is nothing to choose, the last epoch is the best.
        ``None``: auto (selection from 20 epochs on).
    refit : bool or None
        Only with ``select_epochs``. ``None``: auto (a refit from 20 epochs on; shorter runs keep the
        model selected on the inner split). Otherwise:
        After the inner split has chosen the epoch count (early stopping,
        best epoch), retrain the fold's model from the same seed on all its
        training rows, inner split included, for exactly that many epochs of
        the same schedule, and keep that model (Hastie et al., *Elements of
        Statistical Learning*, 7.10: select, then refit on all the training
        data). The fold's out-of-fold rows are never used for either step. It
        costs one extra partial training pass per fold; ``False`` keeps the
        selected model fitted without the inner rows.
    keep_selected : bool or None
        ``None``: auto (the same as ``refit``). Otherwise:
        With ``refit``: keep the model selected on the inner split as well and
        average its probabilities with the refitted model's (``logits.npy``
        then holds the log of the mean probability), a two-model
        ensemble at no extra training cost (both come from the same seed, so
        they differ less than two seeds' models). Fine-tuning only: a linear
        probe keeps its refitted regression.
    models_per_fold : int
        Models trained per fold, each from its own seed (initialisation,
        augmentation, batch order) with its own epoch selection on the same
        inner split and its own refit; the fold's predictions are the mean of
        their probabilities (``logits.npy`` then holds the log of that mean),
        the embeddings are the first model's. It multiplies the training time.
        Ensembles average out seed noise, which on small data sets is as large
        as the differences between settings; the OOF figures then describe the
        ensemble. ``finetune`` mode only.
    masked_variants : tuple of str
        Masked re-scoring variants written to ``oof/masked/<variant>.npy``.
    jobs : int
        Folds trained in parallel processes (each gets ``cores // jobs`` threads).
    threads : int or None
        CPU threads of each training process; ``None`` keeps torch's default
        (all cores) for ``jobs=1`` and ``cores // jobs`` otherwise. On a machine
        shared with other jobs, fewer threads than cores avoid OpenMP
        oversubscription, which can slow training down several times. Bitwise
        reproducibility holds for a fixed thread count.
    num_workers : int
        Background threads that prefetch batches from the image cache (0 = none).
    quiet : bool
        Disable progress bars.
    stop_at : float or None
        Wall-clock deadline (``time.time()`` seconds) by which training must
        end, set by the ``--time-budget`` planner (:mod:`training.planner`):
        each fold gets an equal share of the time left when it starts, and a
        training pass that reaches its share stops cleanly after the current
        batch, keeping its best weights so far (and skipping the refit). It
        changes how long, not what, a run computes up to that point, so it is
        left out of :meth:`config_hash`. ``None``: no deadline.
    """

    model: str = "resnet10t"
    folds: int = 5
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float | None = None
    image_size: int | None = None
    stem_pool: StemPool = "keep"
    precision: Precision = "auto"
    device: DeviceName = "auto"
    seed: int = 0
    mode: Mode = "finetune"
    pretrained_weights: Path | None = None
    holdout_split: str | None = None
    flips: Flips = "none"
    rotate_degrees: float = 10.0
    scale_range: float = 0.1
    translate_fraction: float = 0.06
    brightness: float = 0.1
    contrast: float = 0.15
    augment_probability: float | None = None
    mixup: float | None = None
    class_weighting: ClassWeighting = "balanced"
    inner_val_fraction: float = 0.25
    ema_epochs: float | None = None
    patience: int = 10
    select_epochs: bool | None = None
    refit: bool | None = None
    keep_selected: bool | None = None
    models_per_fold: int = 1
    masked_variants: tuple[str, ...] = field(default=_KNOWN_VARIANTS)
    jobs: int = 1
    threads: int | None = None
    num_workers: int = 0
    quiet: bool = False
    stop_at: float | None = None

    def __post_init__(self) -> None:
        weights = self.pretrained_weights
        if isinstance(weights, str | Path):
            check_not_a_download(str(weights))
        if isinstance(weights, str):
            object.__setattr__(self, "pretrained_weights", Path(weights))
        _validate(self)

    # -- serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (paths as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config from :meth:`to_dict` output (unknown keys are refused).

        Raises
        ------
        ValueError
            On an unknown key or a bad value.
        TypeError
            When ``data`` is not a mapping.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"TrainConfig.from_dict needs a mapping; got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig option(s) {unknown}; valid options are {sorted(names)}"
            )
        kwargs = dict(data)
        if kwargs.get("pretrained_weights") is not None:
            kwargs["pretrained_weights"] = Path(kwargs["pretrained_weights"])
        if "masked_variants" in kwargs:
            kwargs["masked_variants"] = tuple(kwargs["masked_variants"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def auto_fields(self) -> tuple[str, ...]:
        """The budget-dependent fields left at ``None`` (derived by :meth:`resolved`)."""
        return tuple(name for name in _AUTO if getattr(self, name) is None)

    def resolved(self, steps_per_epoch: int | None = None) -> TrainConfig:
        """A copy with every "auto" (``None``) field derived from the budget.

        :func:`training.budget.budget_defaults` of ``epochs`` (and
        ``steps_per_epoch``) fills the fields in :attr:`auto_fields`; fields set
        explicitly are kept; with ``select_epochs=False`` set, an auto ``refit``
        and ``keep_selected`` are ``False`` (there is no selected model). Idempotent.

        Parameters
        ----------
        steps_per_epoch : int, optional
            Optimizer steps per epoch of a fold's selection pass
            (:func:`training.budget.planned_steps_per_epoch`); the weight average
            is off under 200 steps in all.

        Returns
        -------
        TrainConfig
        """
        auto = self.auto_fields
        if not auto:
            return self
        from training.budget import budget_defaults

        derived = budget_defaults(self.epochs, steps_per_epoch).to_dict()
        if self.select_epochs is False:  # no selection pass: nothing to refit or keep
            derived.update(refit=False, keep_selected=False)
        return self.replace(**{name: derived[name] for name in auto})

    def config_hash(self) -> str:
        """Hash of every field that changes results (execution-only fields excluded).

        Returns
        -------
        str
            16 hex digits; used to decide whether a finished fold can be reused.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in _EXECUTION_ONLY}
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _validate(cfg: TrainConfig) -> None:
    hints = get_type_hints(TrainConfig)
    for name in ("precision", "device", "mode", "flips", "class_weighting", "stem_pool"):
        allowed = get_args(hints[name])
        value = getattr(cfg, name)
        if value not in allowed:
            raise ValueError(f"TrainConfig.{name} must be one of {list(allowed)}; got {value!r}")
    if not isinstance(cfg.model, str) or not cfg.model:
        raise TypeError(f"TrainConfig.model must be a timm architecture name; got {cfg.model!r}")
    ints = {
        "folds": (2, None),
        "epochs": (1, None),
        "batch_size": (2, None),
        "seed": (0, None),
        "patience": (0, None),
        "jobs": (1, None),
        "models_per_fold": (1, None),
        "num_workers": (0, None),
    }
    for name, (lo, _hi) in ints.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"TrainConfig.{name} must be an int; got {type(value).__name__}")
        if value < lo:
            raise ValueError(f"TrainConfig.{name} must be >= {lo}; got {value}")
    for name in ("select_epochs", "refit", "keep_selected", "quiet"):
        if name in _AUTO and getattr(cfg, name) is None:
            continue
        if not isinstance(getattr(cfg, name), bool):
            raise TypeError(f"TrainConfig.{name} must be a bool; got {getattr(cfg, name)!r}")
    if cfg.stop_at is not None and (
        isinstance(cfg.stop_at, bool) or not isinstance(cfg.stop_at, int | float)
    ):
        raise TypeError(f"TrainConfig.stop_at must be None or a time.time() value; got {cfg.stop_at!r}")
    if cfg.threads is not None and (
        isinstance(cfg.threads, bool) or not isinstance(cfg.threads, int) or cfg.threads < 1
    ):
        raise ValueError(f"TrainConfig.threads must be None or an int >= 1; got {cfg.threads!r}")
    if cfg.image_size is not None:
        if isinstance(cfg.image_size, bool) or not isinstance(cfg.image_size, int):
            raise TypeError(
                f"TrainConfig.image_size must be an int or None; got {type(cfg.image_size).__name__}"
            )
        if cfg.image_size < 8:
            raise ValueError(f"TrainConfig.image_size must be >= 8 pixels; got {cfg.image_size}")
    floats = {
        "lr": (0.0, None, False),
        "weight_decay": (0.0, None, True),
        "rotate_degrees": (0.0, 180.0, True),
        "scale_range": (0.0, 0.9, True),
        "translate_fraction": (0.0, 0.5, True),
        "brightness": (0.0, 1.0, True),
        "contrast": (0.0, 0.9, True),
        "augment_probability": (0.0, 1.0, True),
        "mixup": (0.0, None, True),
        "inner_val_fraction": (0.0, 0.5, False),
        "ema_epochs": (0.0, None, True),
        "warmup_epochs": (0.0, None, True),
    }
    for name, (lo, hi, lo_inclusive) in floats.items():
        value = getattr(cfg, name)
        if name in _AUTO and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"TrainConfig.{name} must be a number; got {type(value).__name__}")
        if (value < lo) if lo_inclusive else (value <= lo):
            bound = ">=" if lo_inclusive else ">"
            raise ValueError(f"TrainConfig.{name} must be {bound} {lo}; got {value}")
        if hi is not None and value > hi:
            raise ValueError(f"TrainConfig.{name} must be <= {hi}; got {value}")
    if cfg.pretrained_weights is not None and not isinstance(cfg.pretrained_weights, Path):
        raise TypeError(
            "TrainConfig.pretrained_weights must be a pathlib.Path to a local weights file "
            f"or None; got {type(cfg.pretrained_weights).__name__} {cfg.pretrained_weights!r}"
        )
    if not isinstance(cfg.masked_variants, tuple):
        raise TypeError(
            f"TrainConfig.masked_variants must be a tuple of names; got "
            f"{type(cfg.masked_variants).__name__}"
        )
    if cfg.models_per_fold > 1 and cfg.mode != "finetune":
        raise ValueError(
            f"TrainConfig.models_per_fold={cfg.models_per_fold} needs mode='finetune'; a linear "
            "probe's logistic regression is deterministic, so more models per fold add nothing"
        )
    bad = [v for v in cfg.masked_variants if v not in _KNOWN_VARIANTS]
    if bad:
        raise ValueError(
            f"unknown masked variant(s) {bad}; valid variants are {list(_KNOWN_VARIANTS)}"
        )
