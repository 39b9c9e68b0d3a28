"""Prior (label) shift: adjust probabilities to a new prevalence, and estimate it.

A model's probabilities carry the class prior of the data it was trained and
calibrated on. Where the model is used, the prior differs (a 25 % training set, a
5 % screening programme). Under label shift (``p(x | y)`` unchanged) Bayes' rule
moves calibrated probabilities to the new prior exactly:

``q_k(x) = p_k(x) w_k / sum_j p_j(x) w_j``, with ``w_k = target_k / source_k``.

The adjustment assumes calibrated probabilities: calibrate first, then adjust
(Godau, Kalinowski, Christodoulou et al., "Deployment of image analysis algorithms
under prevalence shifts", MICCAI 2023).

When the deployment prevalence is not known it is estimated from unlabeled
deployment predictions:

* :func:`em_prior`: the EM algorithm of Saerens, Latinne & Decaestecker (Neural
  Computation 2002): alternate adjusting the posteriors to the current prior and
  re-estimating the prior as their mean;
* :func:`bbse_prior`: black-box shift estimation (Lipton, Wang & Smola, ICML 2018):
  solve ``C w = mu`` where ``C[i, j] = P(yhat = i, y = j)`` on labeled source data
  and ``mu[i] = P(yhat = i)`` on the deployment data; the prior is ``w * source``.

:func:`estimate_prevalence` adds bootstrap intervals (deployment rows resampled
by patient; for BBSE the source rows too, since ``C`` is estimated).

Both estimators assume that the source and the deployment scores come from the same
model. :func:`estimator_inputs` chooses the source and target so that they do, in
this order (``EstimatorInputs.source``):

1. ``per_fold``: the reference's out-of-fold rows, each scored by the fold model
   that never saw it, against the batch scored by *every* fold model, stacked
   (``(F * M, K)``; ``oof/pred_probs_by_fold.npy`` of ``medaudit predict``). Both
   sides then hold single-fold-model scores. EM on the stacked rows maximises the
   average over folds of each fold model's log-likelihood of the batch (a composite
   likelihood whose expectation is maximal at the true prior for every fold); BBSE
   solves ``C w = mu`` with ``mu`` the mean over folds of each fold model's call
   rates and ``C`` the mean over folds of each fold model's confusion matrix on its
   own out-of-fold rows (source rows weighted so that every fold counts equally
   within a class). The stacked copies of one image are dependent: the intervals
   resample patients with all their copies.
2. ``held_out``: the reference's labeled held-out rows (``folds == -1``), scored by
   the same fold ensemble as the batch, when there are at least
   :data:`MIN_ENSEMBLE_ROWS` of every class.
3. ``unrecorded``: a reference without fold ids (predictions given as arrays):
   every labeled row, as scored;
4. ``oof_vs_ensemble``: out-of-fold rows (single models) against the batch's
   ensemble scores, which are less extreme: **biased** (EM's calibrator and BBSE's
   confusion matrix describe other scores than the batch's; bench_calibration.py
   measures the bias).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from audit.stats import Estimate, bootstrap_ci, two_sample_bootstrap_ci

__all__ = [
    "ESTIMATORS",
    "ESTIMATOR_SOURCES",
    "MSG_BIASED_SOURCE",
    "MSG_NOT_ESTIMABLE",
    "EstimatorInputs",
    "adjust_to_prevalence",
    "as_prior",
    "bbse_prior",
    "discriminates",
    "em_prior",
    "estimate_prevalence",
    "estimator_inputs",
    "estimator_source_rows",
]

Estimator = Literal["em", "bbse"]
#: Prevalence estimators of :func:`estimate_prevalence`.
ESTIMATORS: tuple[str, ...] = ("em", "bbse")
MSG_PRIOR = (
    "{name} must be a prevalence in (0, 1) (the share of class 1) for two classes, or K "
    "positive numbers summing to 1; got {value!r}"
)


#: Why a prevalence is not estimated from a model's predictions.
MSG_NOT_ESTIMABLE = (
    "the model does not separate the classes on the labeled rows (AUC {auc:.2f}, 95% CI "
    "{low:.2f} to {high:.2f}), so the prevalence of new data cannot be estimated from its "
    "predictions"
)


#: Fewest labeled held-out rows (``folds == -1``) of a reference run that are used as the
#: estimators' source instead of the out-of-fold rows.
MIN_ENSEMBLE_ROWS = 50


def estimator_source_rows(labels: np.ndarray, folds: np.ndarray | None) -> np.ndarray:
    """Rows of a reference run to estimate a batch's prevalence from.

    A batch from ``medaudit predict`` is scored by the fold ensemble; out-of-fold rows
    are scored by single fold models, whose calibration and confusion matrix differ
    (bench_calibration.py). When the reference has at least
    :data:`MIN_ENSEMBLE_ROWS` labeled held-out rows of every class (``folds == -1``,
    scored by the same ensemble) those are used; otherwise every labeled row.

    Returns
    -------
    numpy.ndarray
        Row indices.
    """
    y = np.asarray(labels)
    labeled = y >= 0
    if folds is not None:
        held = labeled & (np.asarray(folds) < 0)
        counts = np.bincount(y[held], minlength=int(y.max()) + 1) if held.any() else np.zeros(1)
        if held.sum() >= MIN_ENSEMBLE_ROWS and (counts > 0).all() and len(counts) > 1:
            return np.flatnonzero(held)
    return np.flatnonzero(labeled)


#: What each choice of :func:`estimator_inputs` compares (``evidence["estimator_source"]``).
ESTIMATOR_SOURCES: dict[str, str] = {
    "per_fold": "per fold: the reference's out-of-fold rows (each scored by the fold model that "
    "never saw it) against the batch scored by every fold model, stacked (consistent: "
    "single-model scores on both sides)",
    "held_out": "the reference's held-out rows (folds == -1) against the batch, both scored "
    "alike: by the fold ensemble, or by the same external model (consistent)",
    "unrecorded": "the reference's labeled rows against the batch as scored (the reference "
    "records no folds, so how each side was scored is not known)",
    "oof_vs_ensemble": "BIASED: the reference's out-of-fold rows (scored by single fold models) "
    "against the batch scored by the fold ensemble, whose probabilities are less extreme; "
    "score the batch with medaudit predict (which writes each fold's probabilities) or train "
    "the reference with a held-out split",
}


#: Said in a finding wherever an estimate from the biased ``oof_vs_ensemble`` source is used.
MSG_BIASED_SOURCE = (
    " The estimate compares the reference's out-of-fold scores (single fold "
    "models) with the batch's fold-ensemble scores, which are less extreme, so "
    "it is biased; score the batch with medaudit predict (which keeps each "
    "fold's probabilities) to remove the mismatch."
)


@dataclass(frozen=True)
class EstimatorInputs:
    """Source and target rows of the prevalence estimators (see :func:`estimator_inputs`).

    Attributes
    ----------
    source : {'per_fold', 'held_out', 'unrecorded', 'oof_vs_ensemble'}
        Which rows were chosen (:data:`ESTIMATOR_SOURCES` describes them).
    source_labels, source_probs, source_groups : numpy.ndarray
        ``(N,)``, ``(N, K)``, ``(N,)`` labeled reference rows and their patient keys.
    source_folds : numpy.ndarray or None
        ``(N,)`` fold of each source row (``per_fold`` only: BBSE weights folds equally).
    target_probs, target_groups : numpy.ndarray
        ``(M', K)``, ``(M',)`` the batch's rows (``per_fold``: ``M' = F * M``, fold
        ``f``'s scores of all M rows in block ``f``; groups tiled F times).
    n_target : int
        Rows of the batch (M).
    """

    source: str
    source_labels: np.ndarray
    source_probs: np.ndarray
    source_groups: np.ndarray
    source_folds: np.ndarray | None
    target_probs: np.ndarray
    target_groups: np.ndarray
    n_target: int

    @property
    def biased(self) -> bool:
        """Whether source and target were scored differently (``oof_vs_ensemble``)."""
        return self.source == "oof_vs_ensemble"

    @property
    def description(self) -> str:
        """One sentence for ``evidence['estimator_source']``."""
        return ESTIMATOR_SOURCES[self.source]


def estimator_inputs(
    ref_labels: np.ndarray,
    ref_probs: np.ndarray,
    ref_groups: np.ndarray,
    ref_folds: np.ndarray | None,
    target_probs: np.ndarray,
    target_groups: np.ndarray,
    *,
    target_by_fold: np.ndarray | None = None,
) -> EstimatorInputs:
    """Choose consistent source and target rows for EM and BBSE (module docstring).

    Parameters
    ----------
    ref_labels, ref_probs, ref_groups : numpy.ndarray
        ``(R,)``, ``(R, K)``, ``(R,)`` the reference run's labels (``< 0``:
        unlabeled), probabilities (out-of-fold or held-out) and patient keys.
    ref_folds : numpy.ndarray or None
        ``(R,)`` fold of each reference row (``-1``: held-out, scored by the ensemble).
    target_probs, target_groups : numpy.ndarray
        ``(M, K)`` the batch's ensemble probabilities, ``(M,)`` its patient keys.
    target_by_fold : numpy.ndarray, optional
        ``(M, F, K)`` each fold model's probabilities of the batch
        (``oof/pred_probs_by_fold.npy``), fold ``f`` = the model that produced the
        reference's out-of-fold rows of fold ``f``.

    Returns
    -------
    EstimatorInputs
        Rows with non-finite probabilities are left out on both sides.

    Raises
    ------
    ValueError
        When ``target_by_fold`` does not have M rows and K classes.
    """
    y = np.asarray(ref_labels).astype(np.int64)
    p = np.asarray(ref_probs, np.float64)
    g = np.asarray(ref_groups)
    pt = np.asarray(target_probs, np.float64)
    gt = np.asarray(target_groups)
    labeled = (y >= 0) & np.isfinite(p).all(axis=1)
    folds = None if ref_folds is None else np.asarray(ref_folds).astype(np.int64)
    if target_by_fold is not None and folds is not None:
        by = np.asarray(target_by_fold, np.float64)
        if by.ndim != 3 or by.shape[0] != len(pt) or by.shape[2] != p.shape[1]:
            raise ValueError(
                f"target_by_fold must have shape (M, F, K) = ({len(pt)}, F, "
                f"{p.shape[1]}); got {by.shape}"
            )
        oof = labeled & (folds >= 0)
        used = np.unique(folds[oof])
        k = p.shape[1]
        if oof.any() and used.max() < by.shape[1] and (np.bincount(y[oof], minlength=k) > 0).all():
            stacked = by[:, used, :].transpose(1, 0, 2).reshape(-1, k)
            tiled = np.tile(gt, len(used))
            ok = np.isfinite(stacked).all(axis=1)
            rows = np.flatnonzero(oof)
            return EstimatorInputs(
                "per_fold", y[rows], p[rows], g[rows], folds[rows], stacked[ok], tiled[ok], len(pt)
            )
    rows = estimator_source_rows(np.where(labeled, y, -1), folds)
    source = (
        "unrecorded"
        if folds is None
        else "held_out"
        if bool((folds[rows] < 0).all())
        else "oof_vs_ensemble"
    )
    ok = np.isfinite(pt).all(axis=1)
    return EstimatorInputs(source, y[rows], p[rows], g[rows], None, pt[ok], gt[ok], len(pt))


def discriminates(
    labels: np.ndarray, probs: np.ndarray, *, groups: np.ndarray | None = None
) -> tuple[bool, Estimate]:
    """Whether the model's out-of-fold AUC is above 0.5 beyond chance.

    EM and BBSE need predictions that carry information about the class: with an
    uninformative model EM drifts to a boundary and BBSE's confusion matrix is
    near-singular (Lipton et al. 2018, assumption A.2). Both estimators refuse such
    a model here.

    Returns
    -------
    ok : bool
        The lower end of the AUC's 95 % interval is above 0.5.
    auc : Estimate
    """
    from audit.metrics import auc_with_ci

    auc = auc_with_ci(labels, probs, groups=groups, n_boot=200)
    return bool(np.isfinite(auc.low) and auc.low > 0.5), auc


def as_prior(
    value: float | Sequence[float] | np.ndarray, k: int, *, name: str = "prior"
) -> np.ndarray:
    """A class prior ``(K,)`` from a number (share of class 1, K = 2) or K shares.

    Raises
    ------
    ValueError
        When the value is not a valid prior for K classes.
    """
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.shape == (1,) and k == 2:
        arr = np.array([1 - arr[0], arr[0]])
    if (
        arr.shape != (k,)
        or not np.isfinite(arr).all()
        or (arr <= 0).any()
        or (arr >= 1).any()
        or abs(arr.sum() - 1) > 1e-6
    ):
        raise ValueError(MSG_PRIOR.format(name=name, value=value))
    return arr / arr.sum()


def adjust_to_prevalence(
    probs: np.ndarray,
    source_prior: float | Sequence[float] | np.ndarray,
    target_prior: float | Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Probabilities moved from ``source_prior`` to ``target_prior`` by Bayes' rule.

    Parameters
    ----------
    probs : numpy.ndarray
        ``(N, K)`` calibrated probabilities, or ``(N,)`` probabilities of class 1
        of a binary model.
    source_prior : float or sequence
        The class prior the probabilities are calibrated to (the training data's):
        for two classes a number (the share of class 1) or two shares; else K shares.
    target_prior : float or sequence
        The prior where the model is used, in the same form.

    Returns
    -------
    numpy.ndarray
        Same shape as ``probs``: ``q_k = p_k w_k / sum_j p_j w_j`` with
        ``w = target / source`` (Saerens et al. 2002, eq. 2.4).

    Raises
    ------
    ValueError
        For priors that are not in (0, 1) or do not sum to one, or a shape mismatch.

    Examples
    --------
    >>> import numpy as np
    >>> adjust_to_prevalence(np.array([0.5]), 0.25, 0.05).round(3)
    array([0.136])
    """
    p = np.asarray(probs, dtype=np.float64)
    one_d = p.ndim == 1
    if one_d:
        p = np.column_stack([1 - p, p])
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (N,) or (N, K); got {np.shape(probs)}")
    k = p.shape[1]
    w = as_prior(target_prior, k, name="target_prior") / as_prior(
        source_prior, k, name="source_prior"
    )
    q = p * w
    q /= np.clip(q.sum(axis=1, keepdims=True), 1e-300, None)
    return q[:, 1] if one_d else q


def em_prior(
    probs: np.ndarray,
    source_prior: float | Sequence[float] | np.ndarray,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> np.ndarray:
    """Deployment prior by EM (Saerens, Latinne & Decaestecker, Neural Comput 2002).

    Parameters
    ----------
    probs : numpy.ndarray
        ``(M, K)`` calibrated probabilities of the deployment rows.
    source_prior : float or sequence
        Prior the probabilities are calibrated to.
    tol : float
        Stop when no class's prior moves by more than this.
    max_iter : int

    Returns
    -------
    numpy.ndarray
        ``(K,)`` estimated prior.
    """
    p = np.asarray(probs, dtype=np.float64)
    src = as_prior(source_prior, p.shape[1], name="source_prior")
    prior = src.copy()
    for _ in range(max_iter):
        q = p * (prior / src)
        q /= np.clip(q.sum(axis=1, keepdims=True), 1e-300, None)
        new = q.mean(axis=0)
        if np.max(np.abs(new - prior)) < tol:
            prior = new
            break
        prior = np.clip(new, 1e-9, None)
        prior /= prior.sum()
    return prior


def bbse_prior(
    source_labels: np.ndarray,
    source_probs: np.ndarray,
    target_probs: np.ndarray,
    *,
    source_folds: np.ndarray | None = None,
) -> np.ndarray:
    """Deployment prior by black-box shift estimation (Lipton, Wang & Smola, ICML 2018).

    Parameters
    ----------
    source_labels : numpy.ndarray
        ``(N,)`` labels of held-out source rows (out-of-fold).
    source_probs : numpy.ndarray
        ``(N, K)`` their predicted probabilities (hard predictions are the arg-max).
    target_probs : numpy.ndarray
        ``(M, K)`` predicted probabilities of the deployment rows.
    source_folds : numpy.ndarray, optional
        ``(N,)`` fold of each source row when each fold's rows were scored by their
        own fold model and the target rows by every fold model (stacked). Rows are
        then weighted ``n_j / (F_j n_fj)`` (``n_fj`` rows of class j in fold f,
        ``F_j`` folds with class j), so that ``C[:, j] / p_j`` is the *mean over
        folds* of each fold model's ``P(yhat | y = j)``, as ``mu`` is the mean over
        folds of each fold model's call rates; class totals (the source prior) are
        unchanged.

    Returns
    -------
    numpy.ndarray
        ``(K,)`` estimated prior: ``w = C^+ mu`` clipped at 0, times the source
        prior, renormalised. NaN when ``C`` is singular (a class never predicted).
    """
    y = np.asarray(source_labels).astype(np.int64)
    ps, pt = np.asarray(source_probs), np.asarray(target_probs)
    k = ps.shape[1]
    yhat_s, yhat_t = ps.argmax(axis=1), pt.argmax(axis=1)
    weight = np.ones(len(y))
    if source_folds is not None:
        f = np.unique(np.asarray(source_folds), return_inverse=True)[1]
        cell = np.zeros((f.max() + 1, k))
        np.add.at(cell, (f, y), 1.0)
        n_j, f_j = cell.sum(axis=0), (cell > 0).sum(axis=0)
        weight = n_j[y] / (f_j[y] * cell[f, y])
    joint = np.zeros((k, k))
    np.add.at(joint, (yhat_s, y), weight)
    joint /= len(y)
    mu = np.bincount(yhat_t, minlength=k) / len(yhat_t)
    if np.linalg.matrix_rank(joint) < k:
        return np.full(k, np.nan)
    w = np.clip(np.linalg.solve(joint, mu), 0.0, None)
    prior = w * np.bincount(y, minlength=k) / len(y)
    total = prior.sum()
    return prior / total if total > 0 else np.full(k, np.nan)


def estimate_prevalence(
    target_probs: np.ndarray,
    *,
    method: Estimator,
    source_prior: float | Sequence[float] | np.ndarray | None = None,
    source_labels: np.ndarray | None = None,
    source_probs: np.ndarray | None = None,
    source_folds: np.ndarray | None = None,
    target_groups: np.ndarray | None = None,
    source_groups: np.ndarray | None = None,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[Estimate]:
    """Deployment prevalence of every class with a bootstrap interval.

    Parameters
    ----------
    target_probs : numpy.ndarray
        ``(M, K)`` calibrated probabilities of the deployment rows.
    method : {'em', 'bbse'}
    source_prior : float or sequence, optional
        Needed for ``'em'``.
    source_labels, source_probs : numpy.ndarray, optional
        ``(N,)``, ``(N, K)`` labeled source rows; needed for ``'bbse'``.
    source_folds : numpy.ndarray, optional
        ``(N,)`` folds of the source rows for BBSE against fold-stacked target
        rows (:func:`bbse_prior`).
    target_groups, source_groups : numpy.ndarray, optional
        Patient keys: patients are resampled (with stacked target rows, the keys
        tiled once per fold, so that a patient's copies are resampled together).
    n_boot, seed : int
    alpha : float
        1 - confidence level of the intervals.

    Returns
    -------
    list of Estimate
        One per class, in class order.
    """
    pt = np.asarray(target_probs, dtype=np.float64)
    k = pt.shape[1]
    kw = {
        "method": method,
        "source_prior": source_prior,
        "source_labels": source_labels,
        "source_probs": source_probs,
        "source_folds": source_folds,
        "target_groups": target_groups,
        "source_groups": source_groups,
        "n_boot": n_boot,
        "alpha": alpha,
        "seed": seed,
    }
    if k == 2:  # the two shares sum to one: bootstrap class 1 once, class 0 is its mirror
        one = _estimate_classes(pt, [1], **kw)[0]
        return [Estimate(1 - one.estimate, 1 - one.high, 1 - one.low, one.level, one.method), one]
    return _estimate_classes(pt, list(range(k)), **kw)


def _estimate_classes(
    pt: np.ndarray,
    classes: list[int],
    *,
    method: Estimator,
    source_prior: float | Sequence[float] | np.ndarray | None,
    source_labels: np.ndarray | None,
    source_probs: np.ndarray | None,
    source_folds: np.ndarray | None,
    target_groups: np.ndarray | None,
    source_groups: np.ndarray | None,
    n_boot: int,
    alpha: float,
    seed: int,
) -> list[Estimate]:
    """:func:`estimate_prevalence` for the given classes (one bootstrap each)."""
    k = pt.shape[1]
    if method == "em":
        if source_prior is None:
            raise ValueError("method 'em' needs source_prior")
        src = as_prior(source_prior, k, name="source_prior")
        return [
            bootstrap_ci(
                lambda p, c=c: float(em_prior(p, src)[c]),
                pt,
                groups=target_groups,
                n_boot=n_boot,
                alpha=alpha,
                seed=seed,
            )
            for c in classes
        ]
    if method == "bbse":
        if source_labels is None or source_probs is None:
            raise ValueError("method 'bbse' needs source_labels and source_probs")
        ys = np.asarray(source_labels).astype(np.int64)
        ps = np.asarray(source_probs, dtype=np.float64)
        fs = np.zeros(len(ys), np.int64) if source_folds is None else np.asarray(source_folds)
        by_fold = source_folds is not None
        return [
            two_sample_bootstrap_ci(
                lambda a, b, c=c: float(
                    bbse_prior(a[0], a[1], b[0], source_folds=a[2] if by_fold else None)[c]
                ),
                (ys, ps, fs),
                (pt,),
                groups_first=source_groups,
                groups_second=target_groups,
                n_boot=n_boot,
                alpha=alpha,
                seed=seed,
            )
            for c in classes
        ]
    raise ValueError(f"method must be one of {list(ESTIMATORS)}; got {method!r}")
