"""Tests of the outliers check: planted blank/saturated/noise/other-modality images, controls."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from audit.checks.outliers import (
    CACHE_STAT_COLUMNS,
    SPEC,
    TITLE_BLANK,
    TITLE_PASS,
    TITLE_UNUSUAL,
    OutliersConfig,
    check_outliers,
)
from audit.context import AuditContext
from audit.engine import audit_context
from audit.findings import REFERENCES, Finding
from audit.rundir import RunDir
from tests.phantoms import smooth_phantoms

N = 200
BLANK, SATURATED, NOISE, DISC, CHECKER = 10, 20, 30, 40, 50


def _manifest(n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "sample_id": [f"s{i:03d}" for i in range(n)], "label": rng.integers(0, 2, n),
        "label_name": "x", "patient_key": [f"p{i:03d}" for i in range(n)],
    })  # fmt: skip


def _ctx(images: np.ndarray, **evidence: object) -> AuditContext:
    return AuditContext.from_arrays(_manifest(len(images)), ["a", "b"], images=images, **evidence)


def planted_images(seed: int = 0) -> np.ndarray:
    """Phantoms with a blank, a saturated, a noise, a disc ('CT-like') and a checkerboard image."""
    rng = np.random.default_rng(seed + 7)
    img = smooth_phantoms(N, seed=seed)
    img[BLANK] = 100.0
    img[SATURATED] = np.where(rng.random((32, 32)) < 0.8, 255.0, img[SATURATED])
    img[NOISE] = rng.uniform(0, 255, (32, 32))
    yy, xx = np.mgrid[:32, :32]
    img[DISC] = np.where((yy - 16) ** 2 + (xx - 16) ** 2 < 100, 230.0, 10.0)
    img[CHECKER] = np.where((xx // 4 + yy // 4) % 2 == 0, 200.0, 50.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)[:, None]


def clean_images(seed: int = 0) -> np.ndarray:
    return np.clip(np.rint(smooth_phantoms(N, seed=seed)), 0, 255).astype(np.uint8)[:, None]


def _by_title(findings: list[Finding]) -> dict[str, Finding]:
    return {f.title: f for f in findings}


# --------------------------------------------------------------------------- contract
def test_contract_on_a_tiny_run_directory(tiny_run: RunDir) -> None:
    result = audit_context(AuditContext.from_run_dir(tiny_run), checks=[SPEC.name])
    assert not result.errors and not result.skipped
    for f in result.findings:
        assert f.check == SPEC.name
        assert set(f.references) <= set(REFERENCES)
        json.dumps(f.to_dict(), allow_nan=False)
    assert {f.severity for f in result.findings} <= {"pass", "info"}


# --------------------------------------------------------------------------- planted
def test_planted_outliers_rank_at_the_top() -> None:
    findings = check_outliers(_ctx(planted_images()), OutliersConfig())
    by = _by_title(findings)
    broken = by[TITLE_BLANK]
    assert broken.severity == "warning"
    assert set(broken.sample_ids) == {f"s{BLANK:03d}", f"s{SATURATED:03d}"}
    assert broken.evidence["n_blank"] == 1 and broken.evidence["n_saturated"] == 1
    unusual = by[TITLE_UNUSUAL]
    assert set(unusual.sample_ids) == {f"s{i:03d}" for i in (NOISE, DISC, CHECKER)}
    top = unusual.evidence["top"]
    assert {t["sample_id"] for t in top[:5]} == {f"s{i:03d}" for i in (BLANK, SATURATED, NOISE, DISC, CHECKER)}
    assert all(t["flagged"] for t in top[:5]) and not any(t["flagged"] for t in top[5:])
    assert unusual.severity == "warning"  # 3 of 200 = 1.5 % > warn_fraction 1 %
    assert unusual.evidence["fraction"]["ci_low"] < 0.015 < unusual.evidence["fraction"]["ci_high"]
    assert unusual.evidence["method"]["image_statistics"] == "image cache"
    assert unusual.evidence["method"]["ood"]["space"] == "pixels"
    for f in findings:
        json.dumps(f.to_dict(), allow_nan=False)


def test_few_outliers_are_info_and_clean_controls_pass() -> None:
    img = clean_images()
    img[NOISE, 0] = np.random.default_rng(1).integers(0, 256, (32, 32))
    findings = check_outliers(_ctx(img), OutliersConfig())
    assert [(f.title, f.severity) for f in findings] == [(TITLE_UNUSUAL, "info")]
    assert findings[0].sample_ids == [f"s{NOISE:03d}"]
    for seed in (0, 1, 2):
        clean = check_outliers(_ctx(clean_images(seed)), OutliersConfig())
        assert [f.title for f in clean] == [TITLE_PASS], seed
        assert len(clean[0].evidence["top"]) == 5


def test_embedding_ood_per_fold_model() -> None:
    rng = np.random.default_rng(3)
    folds = np.repeat(np.arange(4), N // 4).astype(np.int16)
    emb = rng.normal(size=(N, 32)).astype(np.float32) + 3.0
    # each fold model has its own feature space: a random rotation per fold
    for f in range(4):
        q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
        emb[folds == f] = emb[folds == f] @ q.astype(np.float32)
    far = [5, 77, 160]
    emb[far] = rng.normal(size=(3, 32)).astype(np.float32) * 3.0 @ np.linalg.qr(rng.normal(size=(32, 32)))[0].astype(np.float32)
    findings = check_outliers(_ctx(clean_images(), embeddings=emb, folds=folds), OutliersConfig())
    unusual = _by_title(findings)[TITLE_UNUSUAL]
    assert set(unusual.sample_ids) == {f"s{i:03d}" for i in far}
    ood = unusual.evidence["method"]["ood"]
    assert ood["space"] == "embeddings" and "per fold model" in ood["method"]
    # the approximate inverted file (faiss) flags the same images
    approx = check_outliers(_ctx(clean_images(), embeddings=emb, folds=folds),
                            OutliersConfig(exact_limit=20))  # fmt: skip
    unusual = _by_title(approx)[TITLE_UNUSUAL]
    assert set(unusual.sample_ids) == {f"s{i:03d}" for i in far}
    assert "inverted-file" in unusual.evidence["method"]["ood"]["method"]


def test_knn_score_ranks_like_cleanlab_out_of_distribution() -> None:
    """Reference implementation: cleanlab's OutOfDistribution kNN score (exp(-mean distance))."""
    from cleanlab.outlier import OutOfDistribution

    rng = np.random.default_rng(4)
    emb = rng.normal(size=(N, 16)) + 2.0
    emb[:4] = rng.normal(size=(4, 16)) * 4
    findings = check_outliers(
        _ctx(clean_images(), embeddings=emb), OutliersConfig(top_n=N, property_z=1e6)
    )
    top = next(f for f in findings if "top" in f.evidence).evidence["top"]
    ours = {t["sample_id"]: t["knn_distance"] for t in top}
    ref = OutOfDistribution().fit_score(features=emb)  # cosine metric, k = 10 for D > 3
    ids = [f"s{i:03d}" for i in range(N)]
    rho = spearmanr([ours[s] for s in ids], ref).statistic
    assert rho < -0.999  # larger distance = lower cleanlab score


def test_image_properties_are_used_and_subgroup_columns_skipped() -> None:
    rng = np.random.default_rng(6)
    props = pd.DataFrame({
        "sample_id": [f"s{i:03d}" for i in range(N)],
        "std_intensity": rng.uniform(0.12, 0.2, N),
        "saturated_fraction": np.zeros(N),
        "mean_intensity": rng.normal(0.5, 0.03, N),
        "border_black_fraction": np.where(np.arange(N) < 15, 0.4, 0.0),  # a site with borders
        "has_corner_mark": np.arange(N) < 5,  # bool: not a measurement
        "corner_mark_corner": rng.integers(0, 4, N),  # code: excluded
        "scanner": "x",  # text: ignored
    })  # fmt: skip
    props.loc[33, "mean_intensity"] = 0.95
    props.loc[44, "std_intensity"] = 0.001
    findings = check_outliers(_ctx(clean_images(), image_properties=props), OutliersConfig())
    by = _by_title(findings)
    assert by[TITLE_BLANK].sample_ids == ["s044"]
    unusual = by[TITLE_UNUSUAL]
    assert unusual.sample_ids == ["s033"]
    method = unusual.evidence["method"]
    assert method["image_statistics"] == "image_properties"
    assert method["properties_skipped_as_subgroups"] == ["border_black_fraction"]
    assert "has_corner_mark" not in method["properties_used"]
    assert "corner_mark_corner" not in method["properties_used"]
    # without the core columns the cache statistics are used instead
    cache = check_outliers(
        _ctx(clean_images(), image_properties=props[["sample_id", "mean_intensity"]]), OutliersConfig()
    )
    assert cache[0].evidence["method"]["image_statistics"] == "image cache"
    assert set(cache[0].evidence["method"]["properties_used"]) == set(CACHE_STAT_COLUMNS)


def test_tiny_dataset_and_no_ood() -> None:
    small = clean_images()[:8]
    findings = check_outliers(_ctx(small), OutliersConfig())
    assert findings[0].severity == "pass"
    assert "skipped" in findings[0].evidence["method"]["ood"]
    none = check_outliers(_ctx(planted_images()), OutliersConfig(ood_space="none"))
    assert _by_title(none)[TITLE_UNUSUAL].evidence["n_out_of_distribution"] == 0


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="ood_space"):
        OutliersConfig(ood_space="model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_stats"):
        OutliersConfig(image_stats="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ood_z"):
        OutliersConfig(ood_z=0)
    with pytest.raises(ValueError, match=r"neighbors_backend must be one of \['auto', 'exact', 'ivf'\]"):
        OutliersConfig(neighbors_backend="hnswlib")  # type: ignore[arg-type]
    assert OutliersConfig(exclude_property_columns=["a"]).exclude_property_columns == ("a",)  # type: ignore[arg-type]
