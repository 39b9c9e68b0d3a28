"""The planting plan: label noise, prevalence by site, follow-ups and duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from ingest.demo import DemoConfig, DemoDataset
from ingest.demo._config import validate_config
from ingest.demo._plan import RandomStreams, make_plan

Demo = tuple[DemoDataset, dict[str, Any]]
SITES = ("site_a", "site_b", "site_c")


# ---------------------------------------------------------------- the plan itself


def test_plan_is_a_function_of_the_seed() -> None:
    cfg = validate_config(DemoConfig(n_patients=40, image_size=32, seed=3))
    a, b = (make_plan(cfg, RandomStreams.from_seed(cfg.seed)) for _ in range(2))
    assert [(im.kind, im.patient, im.true_label, im.recorded_label) for im in a.images] == [
        (im.kind, im.patient, im.true_label, im.recorded_label) for im in b.images
    ]
    for key, values in a.batch.params.items():
        np.testing.assert_array_equal(values, b.batch.params[key])


def test_duplicates_have_distinct_readable_sources() -> None:
    cfg = validate_config(DemoConfig(n_patients=40, image_size=32, seed=3))
    plan = make_plan(cfg, RandomStreams.from_seed(cfg.seed))
    sources = [a for pairs in plan.pairs.values() for a, _ in pairs]
    assert len(sources) == len(set(sources)) == 30
    assert all(plan.images[s].kind in ("original", "follow_up") for s in sources)
    assert set(plan.near) == {b for _, b in plan.pairs["near_duplicate"]}
    assert len(plan.patients) == cfg.n_patients + cfg.n_cross_patient_duplicates
    assert [r.render_row for r in plan.batch.rows] == list(range(len(plan.batch.rows)))


def test_too_few_images_for_the_duplicates_is_refused() -> None:
    cfg = validate_config(DemoConfig(n_patients=3, image_size=32))
    with pytest.raises(ValueError, match="raise n_patients or lower the n_\\*_duplicates"):
        make_plan(cfg, RandomStreams.from_seed(cfg.seed))


# ---------------------------------------------------------------- label noise and prevalence


def test_flipped_set_is_exactly_where_recorded_differs(
    demo: Demo, labels: dict[str, str], small_config: DemoConfig
) -> None:
    _, truth = demo
    noise = truth["label_noise"]
    differs = {p for p, lab in labels.items() if lab != truth["true_labels"][p]}
    flipped = {f["path"]: f for f in noise["flipped"]}
    assert set(flipped) == differs and len(flipped) == len(noise["flipped"])
    for path, f in flipped.items():
        assert f["true_label"] == truth["true_labels"][path]
        assert f["recorded_label"] == labels[path] != f["true_label"]
    fn = sum(f["true_label"] == "nodule" for f in flipped.values())
    assert fn == noise["n_flipped_positive_to_negative"]
    assert fn == round(small_config.label_noise_fn_rate * noise["n_true_positive"])
    assert len(flipped) - fn == round(small_config.label_noise_fp_rate * noise["n_true_negative"])
    assert fn > len(flipped) - fn  # more missed positives than false positives
    assert not differs & (set(truth["corrupted"]) | set(truth["non_image"]))


def test_prevalence_overall_and_by_site(
    demo: Demo, labels: dict[str, str], small_config: DemoConfig
) -> None:
    _, truth = demo
    prev = truth["prevalence"]
    images = truth["images"]
    true = np.array([v["true_label"] == "nodule" for v in images.values()])
    recorded = np.array([labels[p] == "nodule" for p in images])
    assert prev["overall_true"] == pytest.approx(true.mean(), abs=1e-6)
    assert prev["overall_recorded"] == pytest.approx(recorded.mean(), abs=1e-6)
    assert prev["overall_true"] == pytest.approx(small_config.prevalence, abs=0.04)
    assert prev["screening"] == small_config.screening_prevalence
    by_site = prev["by_site_true"]
    for site in SITES:
        in_site = np.array([v["site"] == site for v in images.values()])
        assert by_site[site] == pytest.approx(true[in_site].mean(), abs=1e-6)
    assert by_site["site_b"] > 0.45 and by_site["site_a"] < 0.2
    assert by_site["site_b"] - by_site["site_a"] > 0.3


def test_follow_up_patients_share_their_label(demo: Demo) -> None:
    _, truth = demo
    groups = truth["follow_up_groups"]
    assert truth["multi_image_patients"] == len(groups) > 0
    for group in groups:
        assert 2 <= len(group) <= 4
        assert len({truth["images"][p]["true_label"] for p in group}) == 1
        assert len({truth["images"][p]["patient"] for p in group}) == 1
        assert len({Path(p).parent for p in group}) == 1  # one folder per patient


# ---------------------------------------------------------------- duplicates


def test_exact_duplicates(
    demo: Demo, headers: dict[str, pydicom.Dataset], small_config: DemoConfig
) -> None:
    _, truth = demo
    pairs = truth["exact_duplicates"]
    assert len(pairs) == small_config.n_exact_duplicates
    for a, b in pairs:
        assert headers[a].PixelData == headers[b].PixelData
        assert headers[a].SOPInstanceUID != headers[b].SOPInstanceUID
        assert headers[a].PatientID == headers[b].PatientID
        assert truth["true_labels"][a] == truth["true_labels"][b]


def test_near_duplicates(
    demo: Demo,
    headers: dict[str, pydicom.Dataset],
    displays: dict[str, np.ndarray],
    small_config: DemoConfig,
) -> None:
    _, truth = demo
    pairs = truth["near_duplicates"]
    assert len(pairs) == small_config.n_near_duplicates
    for a, b in pairs:
        assert headers[a].PixelData != headers[b].PixelData
        assert headers[a].PatientID == headers[b].PatientID
        assert np.abs(displays[a] - displays[b]).mean() < 0.1
        assert truth["true_labels"][a] == truth["true_labels"][b]


def test_cross_patient_duplicates(
    demo: Demo, headers: dict[str, pydicom.Dataset], small_config: DemoConfig
) -> None:
    _, truth = demo
    pairs = truth["cross_patient_duplicates"]
    assert len(pairs) == small_config.n_cross_patient_duplicates
    for a, b in pairs:
        assert headers[a].PixelData == headers[b].PixelData
        assert headers[a].PatientID != headers[b].PatientID
        assert headers[a].StudyInstanceUID != headers[b].StudyInstanceUID
        assert Path(a).parent != Path(b).parent
        info = truth["images"][b]
        assert info["patient"] != info["true_patient"] == truth["images"][a]["patient"]
