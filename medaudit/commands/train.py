"""``medaudit train RUN_DIR``: patient-grouped K-fold training on an ingested run.

Writes ``oof/pred_probs.npy``, ``oof/logits.npy``, ``oof/embeddings.npy``,
``oof/folds.npy``, ``oof/masked/<variant>.npy``, ``train/history.json`` and
``train/fold_<k>.pt`` into the run directory and records the configuration
and metrics under ``train`` in ``run.json``. Rerunning the same command after an
interruption resumes: finished folds are reused.

The training library names its parameters in its messages (``TrainConfig.lr``,
``precision='fp32'``); :func:`flag_words` turns them into this command line's
flags (``--lr``, ``--precision fp32``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from medaudit.commands.executor_options import add_executor_arguments, executor_from_args
from training.config import StemPool, TrainConfig
from training.messages import NO_DOWNLOAD_MESSAGE

if TYPE_CHECKING:  # pragma: no cover
    from training.cv import TrainSummary
    from training.executors import Executor

__all__ = [
    "add_parser",
    "add_train_arguments",
    "flag_words",
    "reword_for_cli",
    "run",
    "train_config_from_args",
    "train_from_args",
]

_DEFAULTS = TrainConfig()


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the training options (shared by ``train``, ``run`` and ``demo``).

    When the parser already has an ``--image-size`` option (the ingest cache
    size in ``run`` / ``demo``), the model input size is only available as
    ``--train-image-size``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    g = parser.add_argument_group("training")
    g.add_argument("--model", default=_DEFAULTS.model,
                   help="timm architecture name (default: %(default)s); weights are never downloaded")
    g.add_argument("--folds", type=int, default=_DEFAULTS.folds,
                   help="patient-grouped cross-validation folds (default: %(default)s)")
    g.add_argument("--epochs", type=int, default=_DEFAULTS.epochs,
                   help="maximum epochs per fold; early stopping on an inner split (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                   help="training batch size (default: %(default)s)")
    g.add_argument("--lr", type=float, default=_DEFAULTS.lr,
                   help="peak AdamW learning rate (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay,
                   help="AdamW weight decay (default: %(default)s)")
    size_flags = ["--train-image-size"]
    if "--image-size" not in parser._option_string_actions:
        size_flags.insert(0, "--image-size")
    g.add_argument(*size_flags, dest="train_image_size", type=int, default=None, metavar="S",
                   help="model input side in pixels, resized on the fly (default: the cache size)")
    g.add_argument("--stem-pool", choices=get_args(StemPool), default=_DEFAULTS.stem_pool,
                   help="stem max-pool of ResNet-style models: drop it for twice the feature-map "
                   "resolution (about 2x slower steps); auto drops it for inputs <= 64 px "
                   "trained from scratch, keeps it otherwise (default: %(default)s)")
    # A str, not a Path: Path("https://host/w.pt") collapses the "//", and the raw text
    # is what tells a URL or hub name (refused: nothing is downloaded) from a file.
    g.add_argument("--pretrained-weights", default=None, metavar="FILE",
                   help="local state dict or timm checkpoint to start from (nothing is downloaded)")
    g.add_argument("--pretrained", action="store_true",
                   help="start from pretrained weights: requires --pretrained-weights FILE")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=_DEFAULTS.device,
                   help="default: %(default)s (CUDA when available)")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   default=_DEFAULTS.precision,
                   help="auto: mixed precision on a GPU, bf16 + channels-last on a CPU with native "
                        "bf16, else fp32; fp32 forces full precision (default: %(default)s)")
    g.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="default: %(default)s")
    g.add_argument("--mode", choices=["finetune", "linear-probe"], default=_DEFAULTS.mode,
                   help="finetune every layer, or fit logistic regressions on frozen embeddings "
                        "(default: %(default)s)")
    g.add_argument("--holdout-split", default=None, metavar="NAME",
                   help="manifest 'split' value kept out of the folds and scored by the fold "
                        "ensemble, e.g. test")
    g.add_argument("--flips", choices=["none", "horizontal", "vertical", "both"],
                   default=_DEFAULTS.flips,
                   help="random flips allowed in augmentation (default: %(default)s: flipping "
                        "a chest X-ray swaps laterality)")
    g.add_argument("--class-weighting", choices=["balanced", "none", "sampler"],
                   default=_DEFAULTS.class_weighting,
                   help="class-imbalance handling (default: %(default)s)")
    g.add_argument("--mixup", type=float, default=_DEFAULTS.mixup, metavar="ALPHA",
                   help="mixup Beta(ALPHA, ALPHA) blending of training batches, 0 = off "
                        "(default: auto from --epochs: off up to 10, 0.2 at 40)")
    g.add_argument("--ema-epochs", type=float, default=_DEFAULTS.ema_epochs,
                   help="horizon in epochs of the weight average that is evaluated and kept, "
                        "0 = off (default: auto from --epochs: off up to 10, 3 at 40)")
    g.add_argument("--warmup-epochs", type=float, default=_DEFAULTS.warmup_epochs,
                   metavar="EPOCHS",
                   help="linear learning-rate warm-up before the cosine decay "
                        "(default: auto, 5 %% of --epochs)")
    g.add_argument("--augment-probability", type=float, default=_DEFAULTS.augment_probability,
                   metavar="P",
                   help="probability that a training image is augmented, 0 = off "
                        "(default: auto from --epochs: 0.3 up to 10, 0.9 at 40)")
    g.add_argument("--select-epochs", action=argparse.BooleanOptionalAction,
                   default=_DEFAULTS.select_epochs,
                   help="choose each fold's epoch count on an inner split of its training "
                        "rows (early stopping), then --refit; --no-select-epochs trains each "
                        "fold once on all its training rows for exactly --epochs, like a bare "
                        "loop (default: auto, selection from 20 epochs)")
    g.add_argument("--patience", type=int, default=_DEFAULTS.patience,
                   help="early-stopping patience in epochs, 0 = off (default: %(default)s)")
    g.add_argument("--refit", action=argparse.BooleanOptionalAction, default=_DEFAULTS.refit,
                   help="refit each fold's model on all its training rows for the epoch count "
                        "the inner split chose; --no-refit keeps the model selected on the "
                        "inner split (default: auto, --refit from 20 epochs)")
    g.add_argument("--keep-selected", action=argparse.BooleanOptionalAction,
                   default=_DEFAULTS.keep_selected,
                   help="with --refit, also keep the model selected on the inner split and "
                        "average both models' probabilities (no extra training; default: auto, "
                        "as --refit)")
    g.add_argument("--models-per-fold", type=int, default=_DEFAULTS.models_per_fold, metavar="M",
                   help="models trained per fold from different seeds, their probabilities "
                        "averaged; M times the training time (default: %(default)s)")
    g.add_argument("--time-budget", type=_duration, default=None, metavar="DURATION",
                   help="wall-time budget such as 2m, 15m or 1h: measure this machine, choose "
                        "--model, --epochs, --train-image-size and --models-per-fold on the "
                        "inner split of fold 0's training rows, and stop training cleanly at "
                        "the deadline (the plan is recorded in run.json)")
    g.add_argument("--jobs", type=int, default=_DEFAULTS.jobs,
                   help="folds trained in parallel processes on this machine (the "
                        "single-machine path; --executor ray for a cluster; default: %(default)s)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads per training process (default: all cores, or cores // jobs)")
    g.add_argument("--num-workers", type=int, default=_DEFAULTS.num_workers,
                   help="batch prefetch threads (default: %(default)s)")
    add_executor_arguments(parser)


def _duration(text: str) -> float:
    """``--time-budget`` value in seconds (argparse reports the error as one line, exit 2)."""
    from training.planner import parse_duration

    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).replace("time_budget", "--time-budget")) from None


def train_from_args(
    run_dir: Path, args: argparse.Namespace, *, executor: Executor | None = None
) -> TrainSummary:
    """Train ``run_dir`` with the parsed options (planned by ``--time-budget`` when given).

    ``executor`` defaults to the one of ``--executor`` (:func:`executor_from_args`).
    """
    from audit.rundir import RunDir
    from training.cv import train_run

    with flag_words():
        config = train_config_from_args(args)
        executor = executor or executor_from_args(args)
        budget = getattr(args, "time_budget", None)
        if budget is not None and executor.name != "local":
            raise ValueError("--time-budget plans for this machine (--jobs); it cannot be "
                             "combined with --executor ray")
        curve = getattr(args, "learning_curve", None)
        if curve is not None:
            from training.learning_curve import parse_fractions

            if budget is not None:
                raise ValueError("--learning-curve cannot be combined with --time-budget; train "
                                 "within the budget first, then rerun with --learning-curve "
                                 "and the same options (finished folds are reused)")
            try:
                curve = parse_fractions(curve)
            except ValueError as err:
                raise ValueError(str(err).replace("learning-curve fractions",
                                                  "--learning-curve")) from None
        if budget is not None:
            from training.planner import train_within_budget

            try:
                return train_within_budget(RunDir(run_dir), config, budget)
            except ValueError as err:
                err.args = (str(err).replace("time_budget", "--time-budget"),)
                raise
        return train_run(RunDir(run_dir), config, executor=executor, learning_curve=curve)


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed :func:`add_train_arguments` options.

    Raises
    ------
    ValueError
        On bad values, and when ``--pretrained`` is given without
        ``--pretrained-weights`` (nothing is ever downloaded).
    """
    if getattr(args, "pretrained", False) and args.pretrained_weights is None:
        raise ValueError(NO_DOWNLOAD_MESSAGE.format(what="--pretrained"))
    return TrainConfig(
        model=args.model,
        folds=args.folds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        image_size=args.train_image_size,
        stem_pool=args.stem_pool,
        precision=args.precision,
        device=args.device,
        seed=args.seed,
        mode=args.mode,
        pretrained_weights=args.pretrained_weights,
        holdout_split=args.holdout_split,
        flips=args.flips,
        class_weighting=args.class_weighting,
        mixup=args.mixup,
        ema_epochs=args.ema_epochs,
        warmup_epochs=args.warmup_epochs,
        augment_probability=args.augment_probability,
        select_epochs=args.select_epochs,
        patience=args.patience,
        refit=args.refit,
        keep_selected=args.keep_selected,
        models_per_fold=args.models_per_fold,
        jobs=args.jobs,
        threads=args.threads,
        num_workers=args.num_workers,
        quiet=bool(getattr(args, "quiet", False)),
    )


@dataclasses.dataclass(frozen=True)
class _Flag:
    """The command-line option of one ``TrainConfig`` field."""

    flag: str  # e.g. --lr
    negative: str | None  # --no-refit for a boolean option
    metavar: str | None  # e.g. FILE


@lru_cache(maxsize=1)
def _flags() -> dict[str, _Flag]:
    """``TrainConfig`` field -> its option, read from :func:`add_train_arguments`."""
    parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(parser)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    out: dict[str, _Flag] = {}
    for action in parser._actions:
        # --train-image-size works in every command (``run`` and ``demo`` use --image-size
        # for the ingest cache).
        field = "image_size" if action.dest == "train_image_size" else action.dest
        if field not in fields or not action.option_strings:
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        flag = longs[-1] if field == "image_size" else longs[0]
        negative = next((o for o in longs if o.startswith("--no-")), None)
        out[field] = _Flag(flag, negative, action.metavar)
    return out


def _value_words(f: _Flag, value: str) -> str:
    value = value.strip("'\"")
    if value == "None":
        return f"no {f.flag}"
    if f.negative is not None and value in ("True", "False"):
        return f.flag if value == "True" else f.negative
    return f"{f.flag} {value}"


def reword_for_cli(message: str) -> str:
    """Name command-line flags where a training message names ``TrainConfig`` parameters.

    ``TrainConfig.lr`` becomes ``--lr``, ``precision='fp32'`` becomes
    ``--precision fp32``, ``holdout_split=None`` becomes ``no --holdout-split``;
    parameters without a flag are left as they are.

    Parameters
    ----------
    message : str
        A message of the training library.

    Returns
    -------
    str
    """
    flags = _flags()
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))
    value = r"('[^']*'|\"[^\"]*\"|[^\s,;:)]+)"

    def with_value(m: re.Match[str]) -> str:
        return _value_words(flags[m.group(1)], m.group(2))

    def bare(m: re.Match[str]) -> str:
        f = flags[m.group(1)]
        return f"{f.flag} {f.metavar}" if f.metavar else f.flag

    message = re.sub(rf"\bTrainConfig\.({names})={value}", with_value, message)
    message = re.sub(rf"\bTrainConfig\.({names})\b", bare, message)
    return re.sub(rf"(?<![\w.])({names})={value}", with_value, message)


class _RewordTraining(logging.Filter):
    """Rewords the log records of the training package (:func:`reword_for_cli`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("training"):
            record.msg, record.args = reword_for_cli(record.getMessage()), None
        return True


@contextlib.contextmanager
def flag_words() -> Iterator[None]:
    """Inside the block, training errors and log messages name command-line flags.

    A ``ValueError`` or ``TypeError`` leaving the block, and every record the
    ``training`` loggers emit through the root logger's handlers, are reworded
    with :func:`reword_for_cli`. (Folds trained in worker processes,
    ``--jobs`` > 1, log through their own handlers, unchanged.)
    """
    handlers = list(logging.getLogger().handlers)
    reword = _RewordTraining()
    for h in handlers:
        h.addFilter(reword)
    try:
        yield
    except (ValueError, TypeError) as err:
        if len(err.args) == 1 and isinstance(err.args[0], str):
            err.args = (reword_for_cli(err.args[0]),)
        raise
    finally:
        for h in handlers:
            h.removeFilter(reword)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medaudit train``."""
    p = sub.add_parser("train", help="K-fold training that writes out-of-fold predictions",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="an ingested run directory")
    p.add_argument("--learning-curve", default=None, metavar="FRACTIONS",
                   help="also retrain each fold on patient-grouped fractions of its training rows, "
                   "e.g. 0.25,0.5,0.75,1.0, and write train/learning_curve.json for the "
                   "overfitting check (fine-tuning: about 1.5x the training time for these "
                   "fractions; linear probe: seconds)")
    add_train_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``medaudit train``: train, print the one-screen summary, return 0."""
    summary = train_from_args(args.run_dir, args)
    if not getattr(args, "quiet", False):
        print(summary.text)
    return 0
