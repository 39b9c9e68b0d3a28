"""Image properties: planted black borders, corner marks and saturation are measured."""

from __future__ import annotations

import numpy as np

from ingest.properties import compute_image_properties


def _smooth(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.35 + 0.25 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.08)
    imgs = base[None] + rng.normal(0, 0.02, (n, size, size))
    return (np.clip(imgs, 0, 1) * 255).astype(np.uint8)[:, None]


def test_planted_properties_are_measured() -> None:
    imgs = _smooth(6)
    imgs[1, :, :, :6] = 0  # black left border
    imgs[2, :, 2:8, 2:8] = 255  # bright corner mark (top-left)
    imgs[3] = 255  # saturated
    props = compute_image_properties(imgs, [f"s{i}" for i in range(6)], chunk=4)
    assert props["sample_id"].tolist() == [f"s{i}" for i in range(6)]
    assert props.loc[1, "border_black_fraction"] > 5 * props.loc[0, "border_black_fraction"] + 0.1
    assert props.loc[2, "has_corner_mark"] and props.loc[2, "corner_mark_corner"] == 0
    assert not props.loc[[0, 1, 4, 5], "has_corner_mark"].any()
    assert props.loc[3, "saturated_fraction"] == 1.0
    np.testing.assert_allclose(props["mean_intensity"], imgs.mean(axis=(1, 2, 3)) / 255, atol=1e-5)


def test_chunking_does_not_change_results() -> None:
    imgs = _smooth(9, size=32)
    a = compute_image_properties(imgs, list("abcdefghi"), chunk=2)
    b = compute_image_properties(imgs, list("abcdefghi"), chunk=100)
    assert a.equals(b)
