"""The phantom: rendered values, and nodules where the ground truth says they are."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ingest.demo import DemoConfig, DemoDataset
from ingest.demo._phantom import draw_acquisition, draw_anatomy, lesion_record, render

Demo = tuple[DemoDataset, dict[str, Any]]


def _params(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    anatomy = draw_anatomy(rng, n)
    zeros = np.zeros(n, dtype=bool)
    return draw_acquisition(rng, anatomy, np.arange(n), zeros, zeros, np.ones(n))


def test_render_gives_float32_display_values() -> None:
    p = _params(3)
    noise = np.random.default_rng(1).standard_normal((3, 40, 40), dtype=np.float32)
    img = render(p, np.array([True, False, True]), 40, noise)
    assert img.shape == (3, 40, 40) and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0


def test_nodule_is_brighter_at_its_lesion_record() -> None:
    p = _params(4, seed=2)
    size = 96
    noise = np.zeros((4, size, size), dtype=np.float32)
    with_nodule = render(p, np.ones(4, dtype=bool), size, noise)
    without = render(p, np.zeros(4, dtype=bool), size, noise)
    for i in range(4):
        lesion = lesion_record(p, i, size)
        added = with_nodule[i] - without[i]
        peak = np.unravel_index(np.argmax(added), added.shape)
        assert np.hypot(peak[0] - lesion["row"], peak[1] - lesion["col"]) <= 1.5
        assert 0.5 * lesion["peak_contrast"] < added.max() <= lesion["peak_contrast"] + 1e-3


def test_nodules_are_present_at_the_recorded_place(
    demo: Demo, displays: dict[str, np.ndarray], small_config: DemoConfig
) -> None:
    """Local contrast (disc minus ring) at each recorded nodule, against the same
    place in negative images, and a logistic regression on those patches."""
    _, truth = demo
    images = truth["images"]
    negatives = sorted(p for p, v in images.items() if v["true_label"] == "normal")
    positives = sorted(p for p, v in images.items() if v["true_label"] == "nodule")
    assert all(images[p]["lesion"] is not None for p in positives)
    assert all(images[p]["lesion"] is None for p in negatives)
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[: small_config.image_size, : small_config.image_size]
    half = 4

    def contrast(img: np.ndarray, lesion: dict[str, float]) -> float:
        d = np.hypot(rows - lesion["row"], cols - lesion["col"])
        r = max(lesion["sigma_px"], 1.0)
        return float(img[d <= r].mean() - img[(d > 2 * r) & (d <= 3.5 * r)].mean())

    def patch(img: np.ndarray, lesion: dict[str, float]) -> np.ndarray:
        padded = np.pad(img, half, mode="edge")
        r, c = round(lesion["row"]) + half, round(lesion["col"]) + half
        return padded[r - half : r + half + 1, c - half : c + half + 1].ravel()

    pos_c, neg_c, x, y = [], [], [], []
    for p in positives:
        lesion = images[p]["lesion"]
        pos_c.append(contrast(displays[p], lesion))
        x.append(patch(displays[p], lesion))
        y.append(1)
        for q in rng.choice(negatives, 3, replace=False):
            neg_c.append(contrast(displays[q], lesion))
            x.append(patch(displays[q], lesion))
            y.append(0)
    assert np.mean(pos_c) > 0.05
    assert roc_auc_score([1] * len(pos_c) + [0] * len(neg_c), pos_c + neg_c) > 0.85
    xs, ys = np.array(x), np.array(y)
    xs -= xs.mean(axis=1, keepdims=True)  # position-relative, brightness-free
    scores = cross_val_predict(
        LogisticRegression(C=1.0, max_iter=2000),
        xs,
        ys,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        method="decision_function",
    )
    assert roc_auc_score(ys, scores) > 0.8
