"""Fast mode ``mode='linear-probe'``: frozen backbone + one logistic regression per fold.

The backbone (ideally loaded from ``TrainConfig.pretrained_weights``) embeds every image
once, and once more per masked variant. Each fold then fits a standardised
:class:`~sklearn.linear_model.LogisticRegression` on its training rows, with the
inverse regularisation ``C`` chosen from a small grid by the log loss on the
fold's inner validation split (never the fold's out-of-fold rows), then refitted on all
training rows of the fold. The artifacts are the same as in fine-tuning:

* ``logits``: the linear scores (for two classes ``[0, log-odds]``), so that
  ``softmax(logits) == pred_probs``; with class weighting the log class prior
  is added back (logit adjustment), as in fine-tuning;
* ``embeddings``: the frozen backbone's penultimate features;
* masked variants: masked images embedded by the frozen backbone and scored by
  the fold's regression;
* ``train/fold_<k>.pt``: the regression as a linear-layer state dict
  (``weight`` ``(K', D)``, ``bias`` ``(K',)``, ``feature_mean`` / ``feature_scale``
  ``(D,)`` of the standardisation; ``K' = 1`` for two classes).

Input normalisation uses per-channel statistics of all rows (no labels are
involved, so nothing leaks).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from audit.metrics import auc_score
from audit.rundir import atomic_write
from audit.stats import finite_or_none
from training.config import TrainConfig
from training.dataset import ImageCache
from training.device import resolve_device_setup
from training.fold_outputs import (
    FoldOutputs,
    FoldResult,
    ScoredRows,
    checkpoint_path,
    fold_marker,
    write_fold_outputs,
)
from training.models import build_model
from training.predict import predict_rows, softmax
from training.reproducibility import deterministic, fold_seed, seed_everything, torch_threads
from training.run_context import RunContext
from training.splits import fold_split

__all__ = ["C_GRID", "Probe", "embed_run", "fit_probe", "train_linear_probe"]

_log = logging.getLogger(__name__)

#: Inverse regularisation strengths tried on the inner validation split.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def _decision(lr: Any, x: np.ndarray) -> np.ndarray:
    d = lr.decision_function(x)
    if d.ndim == 1:
        return np.stack([np.zeros_like(d), d], axis=1)
    return d


def _fit(x: np.ndarray, y: np.ndarray, c: float, balanced: bool, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=c, class_weight="balanced" if balanced else None,
                            max_iter=2000, random_state=seed)
    lr.fit(x, y)
    return lr


def embed_run(
    ctx: RunContext, config: TrainConfig
) -> tuple[np.ndarray, dict[str, np.ndarray], Any, Any, float]:
    """Embed every image of the run (and each masked variant) with the frozen backbone.

    Parameters
    ----------
    ctx : RunContext
    config : TrainConfig

    Returns
    -------
    embeddings : numpy.ndarray
        ``(N, D)``.
    masked : dict of str to numpy.ndarray
        ``(N, D)`` per masked variant.
    setup : DeviceSetup
    norm : Normalization
        Channel statistics of all rows (no labels involved).
    seconds : float
        Time taken.
    """
    t_embed = time.perf_counter()
    run = ctx.run
    k = len(ctx.classes)
    setup = resolve_device_setup(device=config.device, precision=config.precision)
    if config.pretrained_weights is None:
        _log.warning(
            "linear probe on a randomly initialised %s backbone: set "
            "TrainConfig.pretrained_weights to a local weights file for meaningful embeddings",
            config.model,
        )
    cache = ImageCache(run)
    all_rows = np.arange(len(ctx.labels))
    norm = cache.channel_stats(all_rows, seed=config.seed)
    with deterministic(setup), torch_threads(config.threads):
        seed_everything(config.seed)
        model = build_model(config, k, cache, setup).eval()
        kw = dict(setup=setup, norm=norm, image_size=config.image_size,
                  batch_size=2 * config.batch_size, num_workers=config.num_workers)
        _, emb = predict_rows(model, cache, all_rows, **kw)  # type: ignore[arg-type]
        masked_emb = {v: predict_rows(model, cache, all_rows, variant=v, **kw)[1]  # type: ignore[arg-type]
                      for v in config.masked_variants}
    embed_seconds = time.perf_counter() - t_embed
    _log.info("linear probe: embedded %d images (+%d masked variants) in %.1fs",
              len(all_rows), len(masked_emb), embed_seconds)
    return emb, masked_emb, setup, norm, embed_seconds


@dataclass(frozen=True)
class Probe:
    """A fitted linear probe: standardisation, logistic regression, logit adjustment."""

    lr: Any
    scaler: Any
    log_prior: np.ndarray

    def score(self, rows: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``(M, K)`` float32 logits of ``features[rows]`` (``features`` ``(N, D)``)."""
        k = len(self.log_prior)
        if rows.size == 0:
            return np.zeros((0, k), np.float32)
        x = self.scaler.transform(features[rows])
        return (_decision(self.lr, x) + self.log_prior).astype(np.float32)


def fit_probe(
    emb: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    inner_val: np.ndarray,
    *,
    n_classes: int,
    balanced: bool,
    seed: int,
) -> tuple[Probe, list[dict[str, Any]], float, np.ndarray]:
    """Choose ``C`` on the inner split, then refit on ``train`` + ``inner_val``.

    Parameters
    ----------
    emb : numpy.ndarray
        ``(N, D)`` embeddings of all rows.
    labels : numpy.ndarray
        ``(N,)`` class indices.
    train, inner_val : numpy.ndarray
        Row indices (disjoint by patient).
    n_classes : int
    balanced : bool
        Class-balanced weights and logit adjustment.
    seed : int

    Returns
    -------
    probe : Probe
        The refitted regression.
    grid : list of dict
        Inner-validation loss / AUC / accuracy per ``C``.
    best_c : float
    fit_rows : numpy.ndarray
        ``train`` and ``inner_val``, sorted.
    """
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    k, y = n_classes, labels
    prior = np.maximum(np.bincount(y[np.concatenate([train, inner_val])], minlength=k), 1) / (
        len(train) + len(inner_val))
    log_prior = np.log(prior) if balanced else np.zeros(k)
    scaler = StandardScaler().fit(emb[train])
    xs_fit, xs_val = scaler.transform(emb[train]), scaler.transform(emb[inner_val])
    grid: list[dict[str, Any]] = []
    best_c, best_loss = C_GRID[0], math.inf
    for c in C_GRID:
        lr = _fit(xs_fit, y[train], c, balanced, seed)
        p = softmax(_decision(lr, xs_val) + log_prior)
        loss = float(log_loss(y[inner_val], np.clip(p, 1e-7, 1), labels=list(range(k))))
        grid.append({"C": c, "inner_val_loss": loss,
                     "inner_val_auc": finite_or_none(auc_score(y[inner_val], p)),
                     "inner_val_acc": float(np.mean(p.argmax(1) == y[inner_val]))})
        if loss < best_loss:
            best_c, best_loss = c, loss
    fit_rows = np.sort(np.concatenate([train, inner_val]))
    scaler = StandardScaler().fit(emb[fit_rows])
    lr = _fit(scaler.transform(emb[fit_rows]), y[fit_rows], best_c, balanced, seed)
    return Probe(lr, scaler, log_prior), grid, best_c, fit_rows


def train_linear_probe(ctx: RunContext, config: TrainConfig, todo: list[int]) -> dict[int, FoldResult]:
    """Fit the linear-probe folds listed in ``todo`` and write their outputs.

    Parameters
    ----------
    ctx : RunContext
        From :func:`training.run_context.load_context`.
    config : TrainConfig
        ``mode='linear-probe'``.
    todo : list of int
        Folds to fit (finished ones are skipped by the caller).

    Returns
    -------
    dict of int to FoldResult
    """
    results: dict[int, FoldResult] = {}
    if not todo:
        return results
    emb, masked_emb, setup, norm, embed_seconds = embed_run(ctx, config)
    run = ctx.run
    k = len(ctx.classes)
    balanced = config.class_weighting != "none"

    for fold in todo:
        t0 = time.perf_counter()
        split = fold_split(ctx.folds, fold, ctx.labels, ctx.groups,
                           inner_val_fraction=config.inner_val_fraction, seed=config.seed)
        seed = fold_seed(config.seed, fold)
        y = ctx.labels
        probe, grid, best_c, train_rows = fit_probe(
            emb, y, split.train, split.inner_val, n_classes=k, balanced=balanced, seed=seed)
        lr, scaler, log_prior, score = probe.lr, probe.scaler, probe.log_prior, probe.score

        def scored(rows: np.ndarray, score: Any = score) -> ScoredRows:
            logits = score(rows, emb)
            return ScoredRows(
                rows=rows, probs=softmax(logits), logits=logits, embeddings=emb[rows],
                masked={v: softmax(score(rows, e)) for v, e in masked_emb.items()},
            )

        in_probs = softmax(score(train_rows, emb))
        in_auc = auc_score(y[train_rows], in_probs)
        outputs = FoldOutputs(oof=scored(split.oof), holdout=scored(split.holdout),
                              in_sample_rows=train_rows, in_sample_probs=in_probs)
        state = {
            "weight": torch.tensor(lr.coef_, dtype=torch.float32),
            "bias": torch.tensor(lr.intercept_, dtype=torch.float32),
            "feature_mean": torch.tensor(scaler.mean_, dtype=torch.float32),
            "feature_scale": torch.tensor(scaler.scale_, dtype=torch.float32),
            "log_prior_adjustment": torch.tensor(log_prior, dtype=torch.float32),
        }
        atomic_write(checkpoint_path(run, fold), lambda t, s=state: torch.save(s, t))
        fold_auc = auc_score(y[split.oof], outputs.oof.probs)
        best = next(g for g in grid if g["C"] == best_c)
        seconds = time.perf_counter() - t0 + embed_seconds / len(todo)
        result = FoldResult(
            fold=fold, auc=fold_auc, in_sample_auc=in_auc,
            inner_val_auc=float("nan") if best["inner_val_auc"] is None else best["inner_val_auc"],
            best_epoch=0, epochs_run=0, n_train=len(train_rows), n_inner_val=len(split.inner_val),
            n_oof=len(split.oof), n_holdout=len(split.holdout), seconds=seconds,
            train_seconds=seconds, train_images=0, setup=setup.to_dict(),
        )
        history = {
            "fold": fold,
            "seed": seed,
            "mode": "linear-probe",
            "epochs": [],
            "c_grid": grid,
            "chosen_C": best_c,
            "in_sample_auc": finite_or_none(in_auc),
            "inner_val_auc": best["inner_val_auc"],
            "oof_auc": finite_or_none(fold_auc),
            "n_train": len(train_rows),
            "n_inner_val": len(split.inner_val),
            "n_oof": len(split.oof),
            "normalization": norm.to_dict(),
            "setup": setup.to_dict(),
        }
        write_fold_outputs(run, fold, outputs, history=history, result=result,
                           marker=fold_marker(config, ctx.fingerprint))
        results[fold] = result
        _log.info("linear-probe fold %d: OOF AUC %.3f, C=%g", fold, fold_auc, best_c)
    return results
