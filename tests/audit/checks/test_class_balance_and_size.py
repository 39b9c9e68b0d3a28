"""class_balance_and_size: small classes and subgroups are flagged; big balanced data passes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.checks.class_balance_and_size import (
    ClassBalanceAndSizeConfig,
    check_class_balance_and_size,
    size_table,
)
from audit.context import AuditContext
from audit.stats import wilson_half_width

CFG = ClassBalanceAndSizeConfig()


def _labels(n_per_class: list[int], seed: int = 0) -> np.ndarray:
    y = np.concatenate([np.full(n, k) for k, n in enumerate(n_per_class)])
    return np.random.default_rng(seed).permutation(y)


def _run(m: pd.DataFrame, classes: list[str], config: ClassBalanceAndSizeConfig = CFG):
    findings = check_class_balance_and_size(AuditContext.from_arrays(m, classes), config)
    json.dumps([f.to_dict() for f in findings], allow_nan=False)
    return findings


def test_tiny_minority_class_is_critical(manifest_for) -> None:  # type: ignore[no-untyped-def]
    m = manifest_for(_labels([500, 10]), ["normal", "cancer"])
    main = _run(m, ["normal", "cancer"])[0]
    assert main.severity == "critical"
    assert main.evidence["minority_class"] == "cancer"
    assert main.evidence["minority_half_width"] == pytest.approx(wilson_half_width(0.8, 10), abs=1e-4)
    assert main.evidence["patients_needed_for_warn_half_width"] == 60
    assert "cancer" in main.title


def test_small_minority_class_is_warning(manifest_for) -> None:  # type: ignore[no-untyped-def]
    m = manifest_for(_labels([500, 40]), ["normal", "cancer"])
    assert _run(m, ["normal", "cancer"])[0].severity == "warning"


def test_patients_not_images_are_counted(manifest_for) -> None:  # type: ignore[no-untyped-def]
    # 80 cancer images from 20 patients: 20 independent units -> warning
    y = np.r_[np.zeros(400, int), np.ones(80, int)]
    m = manifest_for(y, ["normal", "cancer"], images_per_patient=4)
    by_patient = _run(m, ["normal", "cancer"])[0]
    assert by_patient.evidence["classes"][1]["n_patients"] == 20
    assert by_patient.severity == "warning"
    by_image = _run(m, ["normal", "cancer"], ClassBalanceAndSizeConfig(unit="image"))[0]
    assert by_image.severity == "pass"


def test_small_subgroups_are_warned(manifest_for) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    y = _labels([1000, 1000])
    site = np.where(rng.random(2000) < 0.97, "big-hospital", "small-clinic")
    age = rng.uniform(20, 90, 2000)
    sex = rng.choice(["F", "M", None], 2000)
    m = manifest_for(y, ["a", "b"], site=site, age=age, sex=sex)
    findings = _run(m, ["a", "b"])
    sub = [f for f in findings if "subgroup" in f.title]
    assert len(sub) == 1 and sub[0].severity == "warning"
    too_small = {(r["variable"], r["level"]) for r in sub[0].evidence["too_small"]}
    assert ("site", "small-clinic") in too_small
    assert all(level != "<missing>" for _, level in too_small)  # missing is not a subgroup
    assert "age_band" in sub[0].evidence["subgroup_counts"]
    small_ids = set(m.loc[m["site"] == "small-clinic", "sample_id"])
    assert set(sub[0].sample_ids) & small_ids
    assert "Buderer" in sub[0].evidence["rule"]


def test_clean_control_has_no_warning(manifest_for) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    y = _labels([1000, 1000])
    m = manifest_for(y, ["a", "b"], site=rng.choice(["x", "y"], 2000), view=rng.choice(["PA", "AP"], 2000))
    findings = _run(m, ["a", "b"])
    assert all(f.severity in ("pass", "info") for f in findings)
    assert {f.severity for f in findings} >= {"pass", "info"}
    assert any("subgroups large enough" in f.title for f in findings)


def test_riley_criterion_for_small_binary_sets(manifest_for) -> None:  # type: ignore[no-untyped-def]
    m = manifest_for(_labels([100, 100]), ["a", "b"])
    riley = [f for f in _run(m, ["a", "b"]) if "Riley" in f.title]
    assert len(riley) == 1
    assert riley[0].evidence["n_needed"] == 385  # (1.96/0.05)^2 * 0.25, rounded up


def test_images_per_patient_reported(manifest_for) -> None:  # type: ignore[no-untyped-def]
    m = manifest_for(_labels([300, 300]), ["a", "b"], images_per_patient=3)
    info = next(f for f in _run(m, ["a", "b"]) if "images from" in f.title)
    assert info.evidence["n_patients"] == 200
    assert info.evidence["images_per_patient"]["max"] == 3


def test_size_table_counts_per_level(manifest_for) -> None:  # type: ignore[no-untyped-def]
    m = manifest_for(np.array([0, 0, 1, 1]), ["a", "b"])
    t = size_table(m, ["a", "b"], subgroups={"site": pd.Series(["x", "x", "y", None])})
    row = t[(t["variable"] == "site") & (t["level"] == "<missing>") & (t["class"] == "b")]
    assert int(row["n_images"].iloc[0]) == 1
    assert set(t["variable"]) == {"all", "site"}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="warn_half_width <= critical_half_width"):
        ClassBalanceAndSizeConfig(warn_half_width=0.3, critical_half_width=0.2)
    with pytest.raises(ValueError, match="age_bands"):
        ClassBalanceAndSizeConfig(age_bands=(50, 10))
