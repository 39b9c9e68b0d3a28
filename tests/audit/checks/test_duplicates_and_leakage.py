"""Tests of the duplicates_and_leakage check: planted copies and leakage, clean controls."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.checks.duplicates_and_leakage import (
    SPEC,
    TITLE_CROSS_PATIENT,
    TITLE_FOLD_LEAKAGE,
    TITLE_FOLD_LEAKAGE_DUPLICATES,
    TITLE_PASS,
    TITLE_SPLIT_LEAKAGE,
    TITLE_WITHIN_PATIENT,
    DuplicatesAndLeakageConfig,
    _max_ncc,
    check_duplicates_and_leakage,
)
from audit.context import AuditContext
from audit.engine import audit_context
from audit.findings import REFERENCES, Finding
from audit.rundir import RunDir
from tests.phantoms import smooth_phantoms

N = 200


@dataclass
class Planted:
    """A synthetic dataset with known duplicate pairs (source row, copy row) by kind."""

    images: np.ndarray
    manifest: pd.DataFrame
    folds: np.ndarray
    pairs: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def context(self, **evidence: object) -> AuditContext:
        return AuditContext.from_arrays(
            self.manifest, ["a", "b"], images=self.images, folds=self.folds, **evidence
        )


def clean_dataset(seed: int = 0) -> Planted:
    """2 images per patient; split and 5 folds assigned by patient (no leakage)."""
    rng = np.random.default_rng(seed)
    patient = np.arange(N) // 2
    split = np.where(rng.random(N // 2) < 0.8, "train", "test")[patient]
    fold = rng.integers(0, 5, N // 2)[patient]
    manifest = pd.DataFrame({
        "sample_id": [f"s{i:03d}" for i in range(N)],
        "label": rng.integers(0, 2, N), "label_name": "x",
        "patient_key": [f"p{p:03d}" for p in patient], "split": split,
    })  # fmt: skip
    images = smooth_phantoms(N, seed=seed)
    return Planted(images[:, None].astype(np.uint8), manifest, fold.astype(np.int16))


def planted_dataset(seed: int = 0) -> Planted:
    """:func:`clean_dataset` with copies planted (rows 150..199 receive copies of rows 0..49)."""
    data = clean_dataset(seed)
    rng = np.random.default_rng(seed + 100)
    img = data.images[:, 0].astype(np.float64)
    man, folds = data.manifest, data.folds
    kinds = {
        "exact_same_patient": lambda a: a,
        "noise_same_patient": lambda a: a + rng.normal(0, 2.0, a.shape),
        "brightness_same_patient": lambda a: a * 1.05 + 8,
        "shift1_same_patient": lambda a: np.roll(a, 1, axis=1),
        "shift2_same_patient": lambda a: np.roll(a, 2, axis=0),
        "exact_cross_patient_other_fold": lambda a: a,
        "near_cross_patient_other_split": lambda a: np.roll(a, 1, axis=0) + rng.normal(0, 1, a.shape),
    }
    pairs: dict[str, list[tuple[int, int]]] = {}
    for j, (kind, make) in enumerate(kinds.items()):
        src, dst = 2 * j, 150 + 2 * j  # the first image of two different patients
        img[dst] = make(img[src])
        if kind.endswith("same_patient"):
            man.loc[dst, ["patient_key", "split"]] = man.loc[src, ["patient_key", "split"]]
            folds[dst] = folds[src]
        elif kind.endswith("other_fold"):
            man.loc[dst, "split"] = man.loc[src, "split"]
            man.loc[dst + 1, "split"] = man.loc[src, "split"]
            folds[[dst, dst + 1]] = (folds[src] + 1) % 5
        else:
            other = "test" if man.loc[src, "split"] == "train" else "train"
            man.loc[[dst, dst + 1], "split"] = other
        pairs[kind] = [(src, dst)]
    data.images = np.clip(np.rint(img), 0, 255).astype(np.uint8)[:, None]
    data.pairs = pairs
    return data


def _found_pairs(findings: list[Finding]) -> set[frozenset[str]]:
    out: set[frozenset[str]] = set()
    for f in findings:
        for key in ("pairs", "duplicate_pairs"):
            for p in f.evidence.get(key, []):
                out.add(frozenset((p["sample_id_a"], p["sample_id_b"])))
    return out


def _by_title(findings: list[Finding]) -> dict[str, Finding]:
    return {f.title: f for f in findings}


def _ids(pairs: list[tuple[int, int]]) -> set[frozenset[str]]:
    return {frozenset((f"s{a:03d}", f"s{b:03d}")) for a, b in pairs}


# --------------------------------------------------------------------------- contract
def test_contract_on_a_tiny_run_directory(tiny_run: RunDir) -> None:
    result = audit_context(AuditContext.from_run_dir(tiny_run), checks=[SPEC.name])
    assert not result.errors and not result.skipped
    assert result.findings
    for f in result.findings:
        assert f.check == SPEC.name
        assert set(f.references) <= set(REFERENCES)
        json.dumps(f.to_dict(), allow_nan=False)
    # the conftest run has no duplicates: nothing above 'pass'
    assert [f.severity for f in result.findings] == ["pass"]


def test_skipped_without_images(tiny_run: RunDir) -> None:
    ctx = AuditContext.from_arrays(tiny_run.read_manifest(), ["a", "b"])
    result = audit_context(ctx, checks=[SPEC.name])
    assert result.skipped == [{"check": SPEC.name, "reason": "no images"}]


# --------------------------------------------------------------------------- planted
def test_planted_duplicates_are_found_with_few_false_pairs() -> None:
    data = planted_dataset()
    findings = check_duplicates_and_leakage(data.context(), DuplicatesAndLeakageConfig())
    planted = set().union(*(_ids(p) for p in data.pairs.values()))
    found = _found_pairs(findings)
    assert planted <= found  # recall 1
    assert len(found - planted) <= 1  # precision: at most one unplanted pair

    by = _by_title(findings)
    cross = by[TITLE_CROSS_PATIENT]
    assert cross.severity == "critical"
    assert _found_pairs([cross]) == _ids(
        data.pairs["exact_cross_patient_other_fold"] + data.pairs["near_cross_patient_other_split"]
    )
    assert cross.sample_ids[:2] == ["s010", "s160"]  # the exact copy first
    split = by[TITLE_SPLIT_LEAKAGE.format(column="split")]
    assert split.severity == "critical"
    assert _ids(data.pairs["near_cross_patient_other_split"]) <= _found_pairs([split])
    fold = by[TITLE_FOLD_LEAKAGE_DUPLICATES]
    assert fold.severity == "warning"  # folds are patient-grouped; only the copy straddles
    assert _ids(data.pairs["exact_cross_patient_other_fold"]) <= _found_pairs([fold])
    within = by[TITLE_WITHIN_PATIENT]
    assert within.severity == "warning"  # an exact copy within a patient
    assert within.evidence["n_exact_pairs"] == 1

    near = cross.evidence["detection"]["near"][0]
    assert near["space"] == "pixels" and 0 < near["threshold"] < near["reference_median_distance"]
    assert "robust_sd" in near["rule"] and "exact brute-force" in near["method"]
    for f in findings:
        json.dumps(f.to_dict(), allow_nan=False)


def test_clean_control_passes() -> None:
    for seed in (0, 1, 2):
        data = clean_dataset(seed)
        findings = check_duplicates_and_leakage(data.context(), DuplicatesAndLeakageConfig())
        assert [f.title for f in findings] == [TITLE_PASS], seed
        assert findings[0].severity == "pass"


def test_patient_leakage_without_duplicates() -> None:
    data = clean_dataset()
    data.manifest.loc[1, "split"] = "test" if data.manifest.loc[0, "split"] == "train" else "train"
    data.folds[3] = (data.folds[2] + 1) % 5
    by = _by_title(check_duplicates_and_leakage(data.context(), DuplicatesAndLeakageConfig()))
    split = by[TITLE_SPLIT_LEAKAGE.format(column="split")]
    assert split.severity == "critical" and split.evidence["n_patients_spanning"] == 1
    assert sorted(split.sample_ids) == ["s000", "s001"]
    fold = by[TITLE_FOLD_LEAKAGE]
    assert fold.severity == "critical" and fold.evidence["n_patients_spanning_folds"] == 1
    assert sorted(fold.sample_ids) == ["s002", "s003"]


def test_holdout_rows_act_as_a_partition_without_split_column() -> None:
    data = planted_dataset()
    data.manifest = data.manifest.drop(columns="split")
    data.folds[160] = -1  # the cross-patient exact copy of row 10 is a holdout row
    by = _by_title(check_duplicates_and_leakage(data.context(), DuplicatesAndLeakageConfig()))
    leak = by[TITLE_SPLIT_LEAKAGE.format(column="folds")]
    assert {"s010", "s160"} <= set(leak.sample_ids)


def test_exact_only_and_fixed_threshold() -> None:
    data = planted_dataset()
    exact_only = check_duplicates_and_leakage(
        data.context(), DuplicatesAndLeakageConfig(near_duplicate_space="none")
    )
    found = _found_pairs(exact_only)
    assert found == _ids(
        data.pairs["exact_same_patient"] + data.pairs["exact_cross_patient_other_fold"]
    )
    strict = check_duplicates_and_leakage(
        data.context(), DuplicatesAndLeakageConfig(distance_threshold=1e-9)
    )
    near = _by_title(strict)[TITLE_CROSS_PATIENT].evidence["detection"]["near"][0]
    assert near["threshold"] == 1e-9 and near["rule"].startswith("fixed")


def test_approximate_index_finds_the_same_pairs() -> None:
    data = planted_dataset()
    cfg = DuplicatesAndLeakageConfig(exact_limit=50)
    findings = check_duplicates_and_leakage(data.context(), cfg)
    planted = set().union(*(_ids(p) for p in data.pairs.values()))
    assert planted <= _found_pairs(findings)
    method = findings[0].evidence["detection"]["near"][0]["method"]
    assert "inverted-file" in method


def test_embeddings_space_respects_fold_models() -> None:
    """OOF embeddings of different folds are not comparable: searched per fold unless told."""
    data = clean_dataset()
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(N, 16)).astype(np.float32)
    a = int(np.flatnonzero(data.folds == 0)[0])
    b = int(np.flatnonzero((data.folds == 1) & (data.manifest["patient_key"] != data.manifest["patient_key"][a]))[0])
    emb[b] = emb[a] + 1e-4  # identical embeddings, different folds and patients
    cfg = DuplicatesAndLeakageConfig(near_duplicate_space="embeddings")
    per_fold = check_duplicates_and_leakage(data.context(embeddings=emb), cfg)
    assert [f.title for f in per_fold] == [TITLE_PASS]
    assert "same fold model" in per_fold[0].evidence["detection"]["near"][0]["method"]
    one_model = DuplicatesAndLeakageConfig(
        near_duplicate_space="embeddings", embeddings_from_one_model=True
    )
    found = check_duplicates_and_leakage(data.context(embeddings=emb), one_model)
    assert _ids([(a, b)]) <= _found_pairs(found)


def test_runs_from_a_run_directory(tmp_path: Path) -> None:
    data = planted_dataset()
    run = RunDir(tmp_path / "run")
    run.write_manifest(data.manifest)
    run.write_array("images", data.images)
    run.write_array("oof/folds", data.folds)
    run.update_run_json({"classes": ["a", "b"]})
    result = audit_context(AuditContext.from_run_dir(run), checks=[SPEC.name])
    assert not result.errors
    assert TITLE_CROSS_PATIENT in {f.title for f in result.findings}


def test_max_ncc_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(7)

    def direct(a: np.ndarray, b: np.ndarray, m: int) -> np.ndarray:
        p, h, w = a.shape
        best = np.full(p, -1.0)
        for dy in range(-m, m + 1):
            for dx in range(-m, m + 1):
                x = a[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)].reshape(p, -1)
                y = b[:, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)].reshape(p, -1)
                x = x - x.mean(1, keepdims=True)
                y = y - y.mean(1, keepdims=True)
                best = np.maximum(best, (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1)))
        return best

    for side, shift in [(24, 2), (9, 2), (40, 3), (8, 0)]:
        work = rng.random((12, side, side))
        work[1] = np.roll(work[0], (1, -2), axis=(0, 1)) * 2 + 5  # shifted, brighter copy
        ia, ib = rng.integers(0, 12, 30), rng.integers(0, 12, 30)
        ia[0], ib[0] = 0, 1
        got = _max_ncc(work, ia, ib, shift)
        np.testing.assert_allclose(got, direct(work[ia], work[ib], shift), atol=1e-6)
        if shift >= 2:
            assert got[0] > 0.9  # the copy aligns
    flat = np.ones((2, 16, 16))
    assert (_max_ncc(flat, np.array([0]), np.array([1]), 2) == 0).all()  # constant: no correlation


def test_shifted_copies_at_64px() -> None:
    """Sharper 64 px images: 2 px shifts plus brightness and noise are still near-duplicates."""
    rng = np.random.default_rng(11)
    n = 120
    img = smooth_phantoms(n, size=64, seed=3, sigma=1.5)
    pairs = [(0, 60), (2, 62), (4, 64), (6, 66)]
    for k, (src, dst) in enumerate(pairs):
        moved = np.roll(img[src], (2 if k % 2 else -2, 1 if k > 1 else 0), axis=(0, 1))
        img[dst] = np.clip(moved * 0.97 + 4 + rng.normal(0, 1.5, moved.shape), 0, 255)
    manifest = pd.DataFrame({
        "sample_id": [f"s{i:03d}" for i in range(n)], "label": 0, "label_name": "x",
        "patient_key": [f"p{i:03d}" for i in range(n)],
    })  # fmt: skip
    ctx = AuditContext.from_arrays(manifest, ["x"], images=img[:, None].astype(np.uint8))
    findings = check_duplicates_and_leakage(ctx, DuplicatesAndLeakageConfig())
    assert _found_pairs(findings) == _ids(pairs)
    assert _by_title(findings)[TITLE_CROSS_PATIENT].severity == "critical"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="near_duplicate_space"):
        DuplicatesAndLeakageConfig(near_duplicate_space="model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold_max_ratio"):
        DuplicatesAndLeakageConfig(threshold_max_ratio=2.0)
    with pytest.raises(ValueError, match="n_neighbors"):
        DuplicatesAndLeakageConfig(n_neighbors=0)
    with pytest.raises(ValueError, match="align_max_shift"):
        DuplicatesAndLeakageConfig(align_max_shift=-1)
    with pytest.raises(ValueError, match="neighbors_backend must be one of"):
        DuplicatesAndLeakageConfig(neighbors_backend="hnswlib")  # type: ignore[arg-type]
