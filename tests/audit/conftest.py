"""Seeded simulations shared by the audit tests (planted problems with known truth)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest


def simulate_predictions(
    *,
    n: int = 1000,
    k: int = 2,
    sep: float = 2.0,
    flip_rate: float = 0.10,
    asymmetry: float = 2.0,
    prevalence: float = 0.3,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """True labels, a model's out-of-sample probabilities, and asymmetric label flips.

    The model's logits are standard normal plus ``sep`` on the true class (AUC
    about 0.92 for ``sep = 2``). Class 1 is flipped ``asymmetry`` times as often
    as the others; a flip maps class c to c + 1 mod K.

    Returns
    -------
    dict
        ``truth`` (N,), ``given`` (N,), ``pred_probs`` (N, K) float32,
        ``flipped`` (N,) bool, ``logits`` (N, K).
    """
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < prevalence).astype(np.int64) if k == 2 else rng.integers(0, k, n)
    weight = np.where(truth == 1, asymmetry, 1.0)
    flipped = rng.random(n) < weight / weight.sum() * flip_rate * n
    given = truth.copy()
    given[flipped] = (truth[flipped] + 1) % k
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += sep
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return {"truth": truth, "given": given, "pred_probs": p.astype(np.float32),
            "flipped": flipped, "logits": logits.astype(np.float32)}


def make_manifest(
    labels: np.ndarray,
    class_names: list[str],
    *,
    images_per_patient: int = 1,
    **extra: Any,
) -> pd.DataFrame:
    """A valid run manifest for ``labels`` (``sample_id`` s00000 ..., patients p0000 ...)."""
    n = len(labels)
    labels = np.asarray(labels, dtype=np.int64)
    df = pd.DataFrame(
        {
            "sample_id": [f"s{i:05d}" for i in range(n)],
            "label": labels,
            "label_name": [class_names[y] for y in labels],
            "patient_key": [f"p{i // images_per_patient:04d}" for i in range(n)],
        }
    )
    for col, values in extra.items():
        df[col] = values
    return df


@pytest.fixture
def simulate() -> Callable[..., dict[str, np.ndarray]]:
    """:func:`simulate_predictions` as a fixture."""
    return simulate_predictions


@pytest.fixture
def manifest_for() -> Callable[..., pd.DataFrame]:
    """:func:`make_manifest` as a fixture."""
    return make_manifest
