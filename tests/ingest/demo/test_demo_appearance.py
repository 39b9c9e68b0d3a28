"""Site appearance: stored values per site, the burned-in marker, near-duplicate pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pydicom
import pytest

from ingest.demo import DemoDataset
from ingest.demo._appearance import (
    NearSpec,
    display_to_stored,
    near_duplicate,
    stored_to_display,
    to_site_display,
)
from ingest.demo._sites import SITES, marker_box, marker_mask, site_prevalences

Demo = tuple[DemoDataset, dict[str, Any]]


@pytest.mark.parametrize("site", SITES, ids=[s.key for s in SITES])
def test_stored_values_round_trip_to_display(site: Any) -> None:
    display = np.linspace(0.0, 1.0, 101)
    stored = display_to_stored(display, site)
    assert stored.dtype == np.uint16 and stored.max() <= 4095
    back = stored_to_display(stored, site)
    step = site.rescale_slope / (site.value_hi - site.value_lo)
    np.testing.assert_allclose(back, display, atol=step)


def test_site_prevalences_average_to_the_overall_rate() -> None:
    shares = np.array([s.share for s in SITES])
    for prevalence in (0.1, 0.25, 0.4):
        targets = site_prevalences(prevalence)
        assert shares @ targets == pytest.approx(prevalence)
        assert targets[1] > targets[2] > targets[0]


def test_marker_lies_inside_its_box() -> None:
    for size in (32, 64, 128, 257):
        r0, c0, r1, c1 = marker_box(size)
        mask = marker_mask(size)
        assert mask.sum() > 0 and mask[r0:r1, c0:c1].sum() == mask.sum()


def test_near_duplicate_moves_the_image_by_its_shift() -> None:
    site = next(s for s in SITES if s.marker)
    size = 64
    display = to_site_display(np.full((1, size, size), 0.3, np.float32), site, size)
    stored = display_to_stored(display[0], site)
    moved = near_duplicate(stored, site, NearSpec(shift=(2, 1), gain=1.0, offset=0.0, noise_seed=0))
    bright = stored_to_display(moved, site) > 0.95
    np.testing.assert_array_equal(np.argwhere(bright), np.argwhere(marker_mask(size)) + np.array([2, 1]))


def test_site_b_has_a_burned_in_marker(
    demo: Demo, headers: dict[str, pydicom.Dataset], displays: dict[str, np.ndarray]
) -> None:
    _, truth = demo
    r0, c0, r1, c1 = truth["sites"]["site_b"]["marker_box"]
    for path, h in headers.items():
        if truth["images"][path]["kind"] == "near_duplicate":
            continue  # shifted by 1-2 px together with the image
        corner = displays[path][r0:r1, c0:c1]
        if truth["images"][path]["site"] == "site_b":
            assert h.BurnedInAnnotation == "YES"
            assert (corner > 0.98).mean() > 0.4
        else:
            assert (corner > 0.98).mean() < 0.05
