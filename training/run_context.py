"""What every fold of a run reads once: labels, patients, folds and a data fingerprint."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from audit.consistency import data_fingerprint
from audit.rundir import RunDir
from training.config import TrainConfig
from training.splits import assign_folds

__all__ = ["RunContext", "data_fingerprint", "load_context"]


@dataclass(frozen=True)
class RunContext:
    """The data of a run directory that every fold needs (read by :func:`load_context`).

    Attributes
    ----------
    run : RunDir
        The run directory.
    manifest : pandas.DataFrame
        Its ``N``-row manifest.
    labels : numpy.ndarray
        ``(N,)`` int64 class indices in ``[0, K)``.
    groups : numpy.ndarray
        ``(N,)`` patient keys (str).
    classes : list of str
        The ``K`` class names of ``run.json``.
    folds : numpy.ndarray
        ``(N,)`` int16 fold of each row (:func:`training.splits.assign_folds`).
    fingerprint : str
        :func:`data_fingerprint` of the run.
    """

    run: RunDir
    manifest: pd.DataFrame
    labels: np.ndarray
    groups: np.ndarray
    classes: list[str]
    folds: np.ndarray
    fingerprint: str


def load_context(run: RunDir, config: TrainConfig) -> RunContext:
    """Read what every fold needs once: manifest, labels, groups, folds, fingerprint.

    Parameters
    ----------
    run : RunDir
        An ingested run directory.
    config : TrainConfig
        Gives the fold count, the seed and the holdout split.

    Returns
    -------
    RunContext

    Raises
    ------
    ValueError
        When ``run.json`` lists fewer than 2 classes, or labels are outside
        ``[0, K)`` for its K class names.
    """
    manifest = run.read_manifest()
    classes = run.class_names()
    labels = manifest["label"].to_numpy(dtype=np.int64)
    k = len(classes)
    if k < 2:
        raise ValueError(f"run.json of {run.path} lists {k} class(es) {classes}; training needs >= 2")
    if len(labels) and (labels < 0).all():
        raise ValueError(f"{run.path} has no labels (an unlabeled batch, e.g. from medaudit "
                         "predict); training needs a labeled run")
    bad = np.flatnonzero((labels < 0) | (labels >= k))
    if bad.size:
        raise ValueError(
            f"manifest of {run.path}: label must be in [0, {k}) for classes {classes}; got "
            f"{int(labels[bad[0]])} at row {int(bad[0])} ({bad.size} row(s) in all)"
        )
    groups = manifest["patient_key"].astype(str).to_numpy()
    folds = assign_folds(
        manifest, folds=config.folds, seed=config.seed, holdout_split=config.holdout_split
    )
    return RunContext(run, manifest, labels, groups, classes, folds, data_fingerprint(run, manifest))
