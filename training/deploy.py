"""Scoring new data with a trained run's fold ensemble (``medaudit predict``).

A trained run keeps one checkpoint per fold (``train/fold_<k>.pt``, loaded with
``torch.load(..., weights_only=True)`` and split by :func:`training.models.split_model_states`),
the input normalisation of each fold (``train/history.json``) and its training
configuration (``run.json['train']['config']``). :func:`predict_run` rebuilds each
fold's model(s), adds back the log class prior of the rows each was fitted on (the
logit adjustment of class weighting, as training does), and scores every image of
an ingested run directory exactly as training scores a held-out split:

* ``oof/pred_probs.npy``: the mean of the folds' probabilities (the fold ensemble);
* ``oof/pred_probs_by_fold.npy``: ``(N, F, K)`` each fold's own probabilities (a fold
  with several models: the mean of theirs, as training combines them for the fold's
  out-of-fold rows), so that prevalence estimators can compare the batch with the
  reference's out-of-fold rows scored by the same single fold models;
* ``oof/logits.npy``: its logarithm;
* ``oof/embeddings.npy``: the penultimate features of fold ``embedding_fold``'s
  first model (the same model embeds the reference run's rows of that fold and its
  held-out rows, so ``medaudit drift`` compares like with like);
* ``oof/folds.npy``: ``-1`` everywhere (no row is out-of-fold from the K-fold).

A linear-probe run (``mode='linear-probe'``) keeps a logistic regression per fold on
the embeddings of a frozen backbone: :func:`load_linear_probe` rebuilds the backbone
from the weights file recorded in ``run.json`` (or the run's seed for a random one),
checks that it reproduces the run's embeddings, and :func:`score_with_probe` scores
as training scored held-out rows (locally: not as Ray tasks).

``run.json`` gets a ``predict`` section (the trained run, folds, models, timing,
artifact digests) and ``reference`` (``{"path": trained run}``), which the drift
and prevalence checks read.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit.consistency import artifact_digests, data_fingerprint
from audit.rundir import HISTORY, RunDir, stale_after
from training.config import TrainConfig
from training.dataset import ImageCache, Normalization
from training.device import DeviceSetup, resolve_device_setup
from training.executors import Executor, LocalExecutor, RayExecutor, require_visible
from training.loop import class_prior
from training.models import build_model, split_model_states
from training.predict import predict_rows, softmax
from training.reproducibility import torch_threads
from training.run_context import load_context
from training.splits import fold_split

__all__ = ["BlockScores", "FoldModels", "LinearProbe", "PredictSummary", "load_fold_models",
           "load_linear_probe", "plan_blocks", "predict_run", "score_block", "score_with_probe"]

_log = logging.getLogger(__name__)

MSG_NOT_TRAINED = ("{run} has no trained fold models (run.json['train'] or train/fold_<k>.pt "
                   "missing); train it first: medaudit train {run}")
MSG_MODE = ("{run} was trained with mode={mode!r}; medaudit predict scores fine-tuned "
            "(mode='finetune') and linear-probe (mode='linear-probe') runs only")
MSG_PROBE_WEIGHTS = ("{run} is a linear probe on the frozen {model} backbone from the weights "
                     "file {path}, which is needed to embed new images but {why}; restore the "
                     "file the run was trained with")
MSG_PROBE_BACKBONE = ("{run}: the rebuilt {model} backbone does not reproduce the embeddings the "
                      "run was trained with (relative difference {diff:.2g} on {n} of its images"
                      "){why}; its linear probes cannot score new images with it")
MSG_PROBE_RAY = ("{run} is a linear probe: medaudit predict scores it here (one embedding pass "
                 "and a regression per fold), not as Ray tasks; leave out --executor ray")
MSG_CLASSES = ("the new data's classes {new} differ from the trained run's {old}; ingest it with "
               "the trained run's class list")
MSG_IMAGES = ("the new data's image cache is {new} but the trained run's is {old}; ingest it "
              "with the trained run's image size and channels")


@dataclass
class FoldModels:
    """The kept model(s) of one fold, ready to score.

    Attributes
    ----------
    fold : int
    nets : list of (torch.nn.Module, numpy.ndarray)
        Each model with the log class prior ``(K,)`` added to its logits.
    norm : Normalization
        The fold's input normalisation.
    """

    fold: int
    nets: list[tuple[torch.nn.Module, np.ndarray]]
    norm: Normalization


@dataclass
class PredictSummary:
    """What :func:`predict_run` did."""

    run: RunDir
    n_rows: int
    folds: int
    models: int
    seconds: float
    images_per_second: float
    record: dict[str, Any]

    @property
    def text(self) -> str:
        """A short human-readable summary."""
        return (f"scored {self.n_rows} images with {self.folds} folds ({self.models} models) in "
                f"{self.seconds:.1f} s ({self.images_per_second:.0f} images/s)\n"
                f"run directory: {self.run.path}")


def _train_config(trained: RunDir) -> TrainConfig:
    info = trained.read_run_json().get("train")
    if not info or "config" not in info:
        raise ValueError(MSG_NOT_TRAINED.format(run=trained.path))
    config = TrainConfig.from_dict(info["config"])
    if config.mode not in ("finetune", "linear-probe"):
        raise ValueError(MSG_MODE.format(run=trained.path, mode=config.mode))
    if config.stem_pool == "auto" and config.pretrained_weights is not None:
        # training resolved 'auto' with pretrained weights to 'keep' (resolve_stem_pool);
        # rebuilt without the weights file, 'auto' could drop the pool and change the model
        config = dataclasses.replace(config, stem_pool="keep")
    if config.mode == "linear-probe":
        return config  # the frozen backbone is the weights file's (see load_linear_probe)
    # the fold checkpoints hold every weight: no pretrained file is needed to rebuild them
    return dataclasses.replace(config, pretrained_weights=None)


def _setup(trained: RunDir, device: str, precision: str | None) -> DeviceSetup:
    """The device setup to score with: the trained run's recorded precision by default."""
    if precision is None:
        recorded = (trained.read_run_json().get("train") or {}).get("setup") or {}
        same_device = str(recorded.get("device", "")).split(":")[0] == device or device == "auto"
        precision = str(recorded.get("precision", "auto")) if same_device else "auto"
    return resolve_device_setup(device=device, precision=precision)  # type: ignore[arg-type]


def _members(config: TrainConfig) -> int:
    """Models one seed of a fold keeps: the refit and, with ``keep_selected``, the selected one."""
    return 2 if config.keep_selected and config.refit else 1


def _checkpoints(trained: RunDir, config: TrainConfig) -> list[Path]:
    """``train/fold_<k>.pt`` of every fold, in fold order (all must exist)."""
    paths = [trained.file(f"train/fold_{f}.pt") for f in range(config.folds)]
    if not all(p.is_file() for p in paths):
        raise ValueError(MSG_NOT_TRAINED.format(run=trained.path))
    return paths


def load_fold_models(trained: RunDir, cache: ImageCache, *, setup: DeviceSetup) -> list[FoldModels]:
    """Rebuild every fold's kept models from a trained run (weights-only loading).

    Parameters
    ----------
    trained : RunDir
        A run trained with ``mode='finetune'``.
    cache : ImageCache
        The images to score (gives channels and side).
    setup : DeviceSetup
        Device and precision.

    Returns
    -------
    list of FoldModels
        In fold order.

    Raises
    ------
    ValueError
        When the run is not trained, or trained as a linear probe.
    """
    config = _train_config(trained)
    if config.mode != "finetune":
        raise ValueError(f"{trained.path} is a {config.mode} run: load it with load_linear_probe")
    history = trained.read_json(HISTORY)
    ctx = load_context(trained, config)
    k = len(ctx.classes)
    out = []
    for f, path in enumerate(_checkpoints(trained, config)):
        states = split_model_states(torch.load(path, map_location="cpu", weights_only=True))
        split = fold_split(ctx.folds, f, ctx.labels, ctx.groups,
                           inner_val_fraction=config.inner_val_fraction, seed=config.seed)

        def log_prior(rows: np.ndarray) -> np.ndarray:
            if config.class_weighting == "none":
                return np.zeros(k, np.float32)
            return np.log(class_prior(ctx.labels[rows], k)).astype(np.float32)

        fit_rows = np.sort(np.concatenate([split.train, split.inner_val])) if config.refit \
            else split.train
        member = [log_prior(fit_rows), log_prior(split.train)][:_members(config)]
        priors = member * config.models_per_fold
        if len(priors) != len(states):
            raise ValueError(f"{path} holds {len(states)} model(s) but the training config "
                             f"implies {len(priors)}; the run directory is inconsistent")
        nets = []
        for state, lp in zip(states, priors, strict=True):
            net = build_model(config, k, cache, setup)
            net.load_state_dict(state)
            net.eval()
            nets.append((net, lp))
        fh = history["folds"][f]
        norm = Normalization(tuple(fh["normalization"]["mean"]), tuple(fh["normalization"]["std"]))
        out.append(FoldModels(f, nets, norm))
    return out


@dataclass
class BlockScores:
    """Every array the fold ensemble gives a block of rows, in the block's row order.

    A field's rows lie along axis 0 unless its metadata says ``row_axis``;
    :meth:`concat` joins blocks along it, so a new output needs only its field.

    Attributes
    ----------
    probs : numpy.ndarray
        ``(M, K)`` mean over folds of each fold's probabilities.
    embeddings : numpy.ndarray
        ``(M, D)`` from the first model of the embedding fold.
    by_fold : numpy.ndarray
        ``(M, F, K)`` each fold's probabilities (a fold with several models: the mean
        of theirs), whose mean over F is ``probs``.
    """

    probs: np.ndarray
    embeddings: np.ndarray
    by_fold: np.ndarray

    @classmethod
    def concat(cls, blocks: list[BlockScores]) -> BlockScores:
        """Join consecutive blocks into one (rows in the order of ``blocks``).

        Parameters
        ----------
        blocks : list of BlockScores
            At least one.

        Returns
        -------
        BlockScores
        """
        if not blocks:
            raise ValueError("BlockScores.concat needs at least one block")
        return cls(**{
            f.name: np.concatenate([getattr(b, f.name) for b in blocks],
                                   axis=f.metadata.get("row_axis", 0))
            for f in dataclasses.fields(cls)
        })


def score_block(
    folds: list[FoldModels],
    cache: ImageCache,
    rows: np.ndarray,
    *,
    image_size: int | None,
    setup: DeviceSetup,
    batch_size: int = 128,
    embedding_fold: int = 0,
) -> BlockScores:
    """Score ``rows`` with the fold ensemble: every output array of ``medaudit predict``.

    The local path scores all rows as one block; the Ray path
    (:func:`predict_run` with a :class:`~training.executors.RayExecutor`) scores
    blocks of rows in tasks with this same function and joins them
    (:meth:`BlockScores.concat`). A block that starts on a multiple of
    ``batch_size`` gets the same batches, hence the same numbers.

    Parameters
    ----------
    folds : list of FoldModels
        From :func:`load_fold_models`.
    cache : ImageCache
        The images.
    rows : numpy.ndarray
        ``(M,)`` row indices.
    image_size : int or None
        Model input side (``None``: the cache side).
    setup : DeviceSetup
    batch_size : int
    embedding_fold : int
        Fold whose first model gives the embeddings.

    Returns
    -------
    BlockScores
        Probabilities as training scores a held-out split (a fold with several
        models: the mean of theirs, then the mean over folds).

    Raises
    ------
    ValueError
        When ``embedding_fold`` is not among the folds.
    """
    per_fold = []
    emb = None
    for fm in folds:
        outs = [predict_rows(net, cache, rows, setup=setup, norm=fm.norm, image_size=image_size,
                             batch_size=batch_size) for net, _ in fm.nets]
        probs = np.mean([softmax(lg + lp) for (lg, _), (_, lp) in zip(outs, fm.nets, strict=True)],
                        axis=0)
        per_fold.append(probs)
        if fm.fold == embedding_fold:
            emb = outs[0][1]
    if emb is None:
        raise ValueError(f"embedding_fold {embedding_fold} is not among the folds "
                         f"{[fm.fold for fm in folds]}")
    by_fold = np.stack(per_fold, axis=1)
    return BlockScores(by_fold.mean(axis=1).astype(np.float32), emb.astype(np.float32),
                       by_fold.astype(np.float32))


def plan_blocks(n_rows: int, batch_size: int, slots: int,
                block_rows: int | None = None) -> list[tuple[int, int]]:
    """Split rows ``0..n_rows-1`` into ``[start, stop)`` blocks on batch boundaries.

    Parameters
    ----------
    n_rows : int
    batch_size : int
        Every block but the last holds a multiple of it.
    slots : int
        Tasks that run at once: without ``block_rows``, one block per slot.
    block_rows : int, optional
        Rows per block (rounded up to a multiple of ``batch_size``).

    Returns
    -------
    list of (int, int)
        At least one block (``[(0, 0)]`` for no rows).
    """
    if block_rows is None:
        block_rows = -(-n_rows // max(1, slots))
    if block_rows < 1:
        block_rows = 1
    step = -(-block_rows // batch_size) * batch_size
    starts = range(0, n_rows, step) if n_rows else [0]
    return [(s, min(s + step, n_rows)) for s in starts]


def _score_block_task(start: int, stop: int, trained_path: str, new_path: str,
                      opts: dict[str, Any]) -> BlockScores:
    """One Ray task: load the fold checkpoints, score rows ``[start, stop)`` of ``new_path``."""
    trained, new = RunDir(require_visible(trained_path)), RunDir(require_visible(new_path))
    with torch_threads(opts["threads"]):
        setup = _setup(trained, opts["device"], opts["precision"])
        cache = ImageCache(new)
        folds = load_fold_models(trained, cache, setup=setup)
        return score_block(folds, cache, np.arange(start, stop), image_size=opts["image_size"],
                           setup=setup, batch_size=opts["batch_size"],
                           embedding_fold=opts["embedding_fold"])


def _score_on_ray(executor: RayExecutor, trained: RunDir, new: RunDir, *, n_rows: int,
                  block_rows: int | None, quiet: bool,
                  opts: dict[str, Any]) -> tuple[BlockScores, int]:
    """Blocks of rows scored as Ray tasks; the joined scores and the number of blocks."""
    with executor.session() as ray:
        blocks = plan_blocks(n_rows, opts["batch_size"], executor.task_slots(ray), block_rows)
        _log.info("scoring %d images in %d block(s) as Ray tasks (%d CPU, %g GPU each)",
                  n_rows, len(blocks), executor.cpus_per_fold, executor.gpus_per_fold)
        parts = executor.map_blocks(
            ray, _score_block_task, blocks,
            (str(trained.path.resolve()), str(new.path.resolve()), opts),
            what="block", quiet=quiet)
    return BlockScores.concat(parts), len(blocks)


@dataclass
class LinearProbe:
    """A linear-probe run, ready to score: the frozen backbone and each fold's regression.

    Attributes
    ----------
    backbone : torch.nn.Module
        The frozen backbone, rebuilt as training built it (same weights file, or the
        same seed for a random backbone) and checked against the run's embeddings.
    norm : Normalization
        Input normalisation (statistics of all the trained run's rows).
    folds : list of dict
        Per fold ``weight`` ``(K', D)``, ``bias`` ``(K',)``, ``feature_mean`` and
        ``feature_scale`` ``(D,)``, ``log_prior_adjustment`` ``(K,)`` (float64 arrays).
    """

    backbone: torch.nn.Module
    norm: Normalization
    folds: list[dict[str, np.ndarray]]


_PROBE_KEYS = ("weight", "bias", "feature_mean", "feature_scale", "log_prior_adjustment")


def load_linear_probe(trained: RunDir, cache: ImageCache, *, setup: DeviceSetup,
                      check_rows: int = 16, batch_size: int = 128) -> LinearProbe:
    """Rebuild a linear-probe run (``mode='linear-probe'``; ``training.linear_probe``).

    The backbone is built exactly as :func:`training.linear_probe.embed_run` built it:
    from ``TrainConfig.pretrained_weights`` (the local file recorded in ``run.json``),
    or, without one, from random weights drawn with the run's seed. It must then
    reproduce ``oof/embeddings.npy`` of the run's first ``check_rows`` images (a
    changed weights file or another library version would silently change every
    score otherwise).

    Raises
    ------
    ValueError
        When the weights file is missing, a checkpoint is not a linear probe, or the
        rebuilt backbone does not reproduce the run's embeddings.
    """
    from training.reproducibility import deterministic, seed_everything

    config = _train_config(trained)
    weights = config.pretrained_weights
    if weights is not None and not Path(weights).is_file():
        raise ValueError(MSG_PROBE_WEIGHTS.format(run=trained.path, model=config.model,
                                                  path=weights, why="it does not exist"))
    k = len(trained.class_names())
    with deterministic(setup):
        seed_everything(config.seed)
        backbone = build_model(config, k, cache, setup).eval()
    history = trained.read_json(HISTORY)
    nh = history["folds"][0]["normalization"]
    norm = Normalization(tuple(nh["mean"]), tuple(nh["std"]))
    folds = []
    for path in _checkpoints(trained, config):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not set(_PROBE_KEYS) <= set(state):
            raise ValueError(f"{path} is not a linear probe (keys {sorted(state)[:5]}...; "
                             f"expected {list(_PROBE_KEYS)})")
        folds.append({key: state[key].double().numpy() for key in _PROBE_KEYS})
    # the rebuilt backbone must embed the run's own images as training did
    ref_cache = ImageCache(trained)
    rows = np.arange(min(check_rows, trained.n_samples()))
    _, emb = predict_rows(backbone, ref_cache, rows, setup=setup, norm=norm,
                          image_size=config.image_size, batch_size=batch_size)
    ref = trained.read_array("oof/embeddings", mmap=True)[rows]
    diff = float(np.abs(emb - ref).max() / max(float(np.abs(ref).max()), 1e-12))
    if not diff < 0.05:
        why = (" (weights file changed since training?)" if weights is not None else
               " (a random backbone is reproduced from the seed only with the same timm and "
               "torch versions)")
        raise ValueError(MSG_PROBE_BACKBONE.format(run=trained.path, model=config.model,
                                                   diff=diff, n=len(rows), why=why))
    return LinearProbe(backbone, norm, folds)


def score_with_probe(
    probe: LinearProbe,
    cache: ImageCache,
    rows: np.ndarray,
    *,
    image_size: int | None,
    setup: DeviceSetup,
    batch_size: int = 128,
) -> BlockScores:
    """Fold-ensemble probabilities of a linear-probe run, as training scores held-out rows.

    Each fold: standardise the backbone's embeddings with the fold's scaler, apply
    its regression (two classes: logits ``[0, log-odds]``), add the log class prior
    back, softmax. ``embeddings`` are the frozen backbone's (the same for every fold).
    """
    _, emb = predict_rows(probe.backbone, cache, rows, setup=setup, norm=probe.norm,
                          image_size=image_size, batch_size=batch_size)
    e = emb.astype(np.float64)
    per_fold = []
    for st in probe.folds:
        d = ((e - st["feature_mean"]) / st["feature_scale"]) @ st["weight"].T + st["bias"]
        if d.shape[1] == 1:
            d = np.concatenate([np.zeros_like(d), d], axis=1)
        per_fold.append(softmax(d + st["log_prior_adjustment"]))
    by_fold = np.stack(per_fold, axis=1)
    return BlockScores(by_fold.mean(axis=1).astype(np.float32), emb.astype(np.float32),
                       by_fold.astype(np.float32))


def predict_run(
    trained_dir: RunDir | str | os.PathLike[str],
    new_dir: RunDir | str | os.PathLike[str],
    *,
    batch_size: int = 128,
    embedding_fold: int = 0,
    device: str = "cpu",
    precision: str | None = None,
    threads: int | None = None,
    executor: Executor | None = None,
    block_rows: int | None = None,
    quiet: bool = True,
) -> PredictSummary:
    """Score an ingested run directory with a trained run's fold ensemble.

    Parameters
    ----------
    trained_dir : RunDir or path
        The trained run (``train/fold_<k>.pt``, ``train/history.json``, ``run.json``).
    new_dir : RunDir or path
        An ingested run (labels optional) with the trained run's classes, image
        size and channels.
    batch_size : int
    embedding_fold : int
        Fold whose first model writes ``oof/embeddings.npy``.
    device : {'cpu', 'cuda', 'auto'}
    precision : {'fp32', 'bf16', 'fp16', 'auto'}, optional
        Default: the precision the trained run was scored with (so that the same
        image gets the same score as in training), on the same kind of device.
    threads : int, optional
        CPU threads for torch (with a Ray executor: per task, default its
        ``cpus_per_fold``).
    executor : Executor, optional
        :class:`~training.executors.LocalExecutor` (default) scores every row
        here; a :class:`~training.executors.RayExecutor` scores blocks of rows
        as Ray tasks, each loading the fold checkpoints, and this process joins
        them in row order. The arrays are the same (bitwise at equal threads).
    block_rows : int, optional
        Rows per Ray task, rounded up to a multiple of ``batch_size`` (default:
        one block per task the cluster runs at once). Ignored by the local executor.
    quiet : bool
        No progress bar for the Ray blocks.

    Returns
    -------
    PredictSummary

    Raises
    ------
    ValueError
        Untrained runs, a linear probe whose backbone cannot be rebuilt (or with a Ray
        executor), classes or image caches that disagree.
    training.executors.ExecutorUnavailableError
        When Ray is not installed or its address does not answer.
    training.executors.BlockFailedError
        When a block failed on its worker (one line per block).
    """
    trained = trained_dir if isinstance(trained_dir, RunDir) else RunDir(trained_dir)
    new = new_dir if isinstance(new_dir, RunDir) else RunDir(new_dir)
    executor = executor or LocalExecutor()
    config = _train_config(trained)
    if not 0 <= embedding_fold < config.folds:
        raise ValueError(f"embedding_fold must be a fold of {trained.path} (0 to "
                         f"{config.folds - 1}); got {embedding_fold}")
    if new.class_names() != trained.class_names():
        raise ValueError(MSG_CLASSES.format(new=new.class_names(), old=trained.class_names()))
    t0 = time.perf_counter()
    with torch_threads(threads), new.transaction("medaudit predict") as staged:
        cache = ImageCache(new)
        old_shape = tuple(trained.read_array("images", mmap=True).shape[1:])
        if tuple(cache.shape[1:]) != old_shape:
            raise ValueError(MSG_IMAGES.format(new=tuple(cache.shape[1:]), old=old_shape))
        setup = _setup(trained, device, precision)
        rows = np.arange(new.n_samples())
        if config.mode == "linear-probe":
            if isinstance(executor, RayExecutor):
                raise ValueError(MSG_PROBE_RAY.format(run=trained.path))
            task_threads = threads
            probe = load_linear_probe(trained, cache, setup=setup, batch_size=batch_size)
            n_models = len(probe.folds)
            t1 = time.perf_counter()
            scores = score_with_probe(probe, cache, rows, image_size=config.image_size,
                                      setup=setup, batch_size=batch_size)
            n_blocks = 1
        elif isinstance(executor, RayExecutor):
            task_threads = threads or executor.cpus_per_fold
            opts = {"threads": task_threads, "device": device, "precision": precision,
                    "image_size": config.image_size, "batch_size": batch_size,
                    "embedding_fold": embedding_fold}
            _checkpoints(trained, config)  # untrained: refused before Ray starts
            n_models = config.folds * _members(config) * config.models_per_fold
            t1 = time.perf_counter()
            scores, n_blocks = _score_on_ray(executor, trained, new, n_rows=len(rows),
                                             block_rows=block_rows, quiet=quiet, opts=opts)
        else:
            task_threads = threads
            folds = load_fold_models(trained, cache, setup=setup)
            n_models = sum(len(fm.nets) for fm in folds)
            t1 = time.perf_counter()
            scores = score_block(folds, cache, rows, image_size=config.image_size, setup=setup,
                                 batch_size=batch_size, embedding_fold=embedding_fold)
            n_blocks = 1
        score_s = time.perf_counter() - t1
        stale, drop = stale_after("train")
        staged.remove(stale)
        staged.write_array("oof/pred_probs", scores.probs)
        staged.write_array("oof/logits",
                           np.log(np.clip(scores.probs, 1e-12, None)).astype(np.float32))
        staged.write_array("oof/embeddings", scores.embeddings)
        staged.write_array("oof/folds", np.full(len(rows), -1, np.int16))
        staged.write_array("oof/pred_probs_by_fold", scores.by_fold)
        names = ["oof/pred_probs.npy", "oof/logits.npy", "oof/embeddings.npy", "oof/folds.npy",
                 "oof/pred_probs_by_fold.npy"]
        seconds = time.perf_counter() - t0
        trained_info = trained.read_run_json().get("train") or {}
        record = {
            "trained_run": trained.path.name,
            # which training scored the batch (medaudit drift refuses another reference)
            "trained_fingerprint": {k: trained_info.get(k)
                                    for k in ("config_hash", "data_fingerprint")},
            "mode": config.mode,
            "folds": config.folds,
            "models": n_models,
            "scored_by": f"mean of {config.folds} folds' probabilities",
            "embedding_fold": embedding_fold if config.mode == "finetune" else
            "frozen backbone (the same for every fold)",
            "n_rows": len(rows),
            "has_labels": bool(new.read_run_json().get("has_labels", True)),
            "seconds": round(seconds, 3),
            "score_seconds": round(score_s, 3),
            "images_per_second": round(len(rows) / max(score_s, 1e-9), 1),
            "model": config.model,
            "setup": setup.to_dict(),
            "executor": {**executor.describe(task_threads), "blocks": n_blocks},
            "data_fingerprint": data_fingerprint(new),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "artifacts": artifact_digests(staged, names),
        }
        staged.update_run_json({"predict": record,
                                "reference": {"path": str(Path(trained.path).resolve()),
                                              "set_by": "medaudit predict"}}, drop=drop)
    _log.info("scored %d images with %d folds in %d block(s)", len(rows), config.folds, n_blocks)
    return PredictSummary(new, len(rows), config.folds, n_models, seconds,
                          record["images_per_second"], record)
