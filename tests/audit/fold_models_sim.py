"""Synthetic K-fold models whose fold ensemble is less confident than each fold model.

Each image has a latent score (``2 y + N(0, 1)``); each fold model sees it through its
own independent error (``N(0, noise^2)``), so its calibrated posterior is that of a
Gaussian score ``N(2 y, 1 + noise^2)``. Averaging the folds' posteriors (what
``medaudit predict`` writes as ``oof/pred_probs``) gives less extreme probabilities
than any single fold model's, as with real fold ensembles.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_FOLDS, FOLD_NOISE = 5, 1.0


def fold_scores(
    rng: np.random.Generator, n: int, prevalence: float, noise: float | np.ndarray = FOLD_NOISE
) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n,)`` and each fold model's score ``(n, N_FOLDS)``."""
    y = (rng.random(n) < prevalence).astype(int)
    latent = 2.0 * y + rng.normal(0, 1, n)
    return y, latent[:, None] + rng.normal(0, 1, (n, N_FOLDS)) * noise


def fold_posterior(score: np.ndarray, prior: float, noise: float = FOLD_NOISE) -> np.ndarray:
    """``(n, 2)`` calibrated posterior of one fold model at the class-1 ``prior``."""
    v = 1 + noise**2
    z = 2.0 * score / v - 2.0 / v + np.log(prior / (1 - prior))
    p = 1 / (1 + np.exp(-z))
    return np.column_stack([1 - p, p])


def reference_and_batch(
    rng: np.random.Generator,
    n_ref: int,
    n_batch: int,
    prevalence: float,
    *,
    ref_prevalence: float = 0.3,
) -> dict[str, np.ndarray]:
    """A reference scored out-of-fold and a batch scored by every fold model.

    Returns
    -------
    dict
        ``y_ref`` ``(R,)``, ``folds`` ``(R,)``, ``probs_ref`` ``(R, 2)`` (each row by its
        own fold model), ``y_batch`` ``(M,)``, ``by_fold`` ``(M, F, 2)``, ``ensemble``
        ``(M, 2)`` (mean over folds).
    """
    ys, ss = fold_scores(rng, n_ref, ref_prevalence)
    folds = rng.integers(0, N_FOLDS, n_ref)
    ps = fold_posterior(ss[np.arange(n_ref), folds], ref_prevalence)
    yt, st = fold_scores(rng, n_batch, prevalence)
    by_fold = np.stack([fold_posterior(st[:, f], ref_prevalence) for f in range(N_FOLDS)], axis=1)
    return {
        "y_ref": ys,
        "folds": folds,
        "probs_ref": ps,
        "y_batch": yt,
        "by_fold": by_fold,
        "ensemble": by_fold.mean(axis=1),
    }


def batch_context(
    manifest: Any, d: dict[str, np.ndarray], ref: Any, *, per_fold: bool = True
) -> Any:
    """The batch of :func:`reference_and_batch` as an unlabeled ``AuditContext`` comparing
    it with ``ref`` (a ``ReferenceRun``), with each fold's probabilities or only the
    ensemble's."""
    from audit.context import AuditContext

    extra = {"pred_probs_by_fold": d["by_fold"]} if per_fold else {}
    return AuditContext.from_arrays(
        manifest, ["benign", "malignant"], pred_probs=d["ensemble"], reference=ref, **extra
    )
