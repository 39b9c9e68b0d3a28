"""Tests of audit._neighbors: exact and approximate kNN, backends, memo, pixel features."""

from __future__ import annotations

import numpy as np
import pytest

from audit import _neighbors as nbrs
from audit._neighbors import (
    MSG_BACKEND_MISSING,
    available_backends,
    backend_available,
    clear_cache,
    knn,
    pixel_embedding,
    require_backend,
    resolve_backend,
    robust_center_scale,
)


def _brute(x: np.ndarray, metric: str) -> np.ndarray:
    """Reference distance matrix in float64 (self at +inf)."""
    x = x.astype(np.float64)
    if metric == "cosine":
        norm = np.linalg.norm(x, axis=1)
        xn = x / np.where(norm > 0, norm, 1.0)[:, None]
        d = 1.0 - xn @ xn.T
        zero = norm == 0
        d[zero, :] = 1.0
        d[:, zero] = 1.0
    else:
        d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return d


def _clustered(n: int, d: int = 48, seed: int = 0, n_dup: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Mixture data with ``n_dup`` planted near-copies; returns data and (source, copy) pairs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (12, 8))
    w = rng.normal(0, 1, (8, d))
    x = (centers[rng.integers(0, 12, n)] + rng.normal(0, 1, (n, 8))) @ w
    x += rng.normal(0, 0.3, (n, d))
    pairs = rng.choice(n, size=(n_dup, 2), replace=False)
    x[pairs[:, 1]] = x[pairs[:, 0]] + rng.normal(0, 0.01, (n_dup, d))
    return x.astype(np.float32), pairs


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_matches_brute_force(metric: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    x[7] = x[3]  # an exact copy
    x[11] = 0.0  # an all-zero row
    res = knn(x, 5, metric=metric, backend="exact", chunk_rows=64, db_chunk_rows=100)
    ref = np.sort(_brute(x, metric), axis=1)[:, :5]
    assert res.indices.shape == (300, 5) and res.indices.dtype == np.int64
    assert res.distances.dtype == np.float32
    np.testing.assert_allclose(res.distances, ref, atol=2e-5)
    assert (res.indices != np.arange(300)[:, None]).all()  # never its own neighbour
    assert res.indices[7, 0] == 3 and res.distances[7, 0] == 0.0
    assert res.exact and res.backend == "exact"
    assert np.all(np.diff(res.distances, axis=1) >= 0)


def test_small_distances_are_precise() -> None:
    """Re-ranking from differences keeps 1e-7-level cosine distances (1 - a.b would not)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 64)).astype(np.float64)
    x[1] = x[0] + 1e-4 * rng.normal(size=64)
    expected = _brute(x, "cosine")[1, 0]
    assert expected < 1e-7
    got = knn(x, 1, backend="exact").distances[1, 0]
    assert got == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("backend", ["ivf", "hnswlib"])
def test_approximate_backends_find_near_copies(backend: str) -> None:
    if not backend_available(backend):
        pytest.skip(f"{backend} not installed")
    x, pairs = _clustered(4000)
    approx = knn(x, 10, backend=backend, n_lists=40, reduce_dim=16)
    exact = knn(x, 10, backend="exact")
    assert approx.backend == backend and not approx.exact
    # every planted copy is the nearest neighbour of its source
    assert (approx.indices[pairs[:, 0], 0] == pairs[:, 1]).mean() == 1.0
    # approximate kNN distances are exact distances of possibly-missed neighbours
    ratio = approx.distances.mean(1) / exact.distances.mean(1)
    assert ratio.min() >= 1 - 1e-5 and np.median(ratio) < 1.1
    recall = np.mean([np.isin(approx.indices[i], exact.indices[i]).mean() for i in range(0, 4000, 7)])
    assert recall > 0.6
    assert "approximate" in approx.describe()


def test_auto_switches_to_ivf_above_the_limit() -> None:
    x, _ = _clustered(600)
    assert knn(x, 3, exact_limit=1000).backend == "exact"
    assert knn(x, 3, exact_limit=100).backend == "ivf"
    assert resolve_backend("auto", 10**6) == "ivf"
    assert resolve_backend("auto", 9_000, d=512) == "exact"
    assert resolve_backend("auto", 12_000, d=512) == "ivf"
    assert resolve_backend("auto", 25_000, d=64) == "exact"


def test_groups_restrict_neighbours_and_pad_small_groups() -> None:
    x, _ = _clustered(200)
    groups = np.repeat([0, 1, 2], [100, 97, 3])
    res = knn(x, 4, groups=groups)
    for g in (0, 1, 2):
        rows = np.flatnonzero(groups == g)
        found = res.indices[rows]
        assert np.isin(found[found >= 0], rows).all()
    small = res.indices[groups == 2]
    assert (small[:, 2:] == -1).all() and np.isinf(res.distances[groups == 2][:, 2:]).all()
    with pytest.raises(ValueError, match="one entry per row"):
        knn(x, 4, groups=groups[:-1])


def test_k_larger_than_data_is_padded() -> None:
    res = knn(np.eye(3, dtype=np.float32), 5)
    assert res.indices.shape == (3, 5)
    assert (res.indices[:, 2:] == -1).all()
    assert np.isfinite(res.distances[:, :2]).all()


def test_bad_inputs_raise() -> None:
    x = np.ones((5, 2))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        knn(x, 2)
    with pytest.raises(ValueError, match="2-D numeric"):
        knn(np.ones(5), 2)
    with pytest.raises(ValueError, match="unknown metric"):
        knn(np.ones((5, 2)), 2, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid backends"):
        knn(np.ones((5, 2)), 2, backend="annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive integer"):
        knn(np.ones((5, 2)), 0)


def test_optional_backend_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"exact", "ivf"} <= set(available_backends())
    monkeypatch.setattr(nbrs, "_module_available", lambda name: False)
    assert not backend_available("hnswlib")
    assert available_backends() == ["exact", "ivf"]
    expected = MSG_BACKEND_MISSING.format(
        backend="hnswlib", package="hnswlib", install="pip install hnswlib"
    )
    with pytest.raises(ImportError) as err:
        require_backend("hnswlib")
    assert str(err.value) == expected
    with pytest.raises(ImportError, match="pip install hnswlib"):
        knn(np.ones((5, 2)), 2, backend="hnswlib")
    # the pure-numpy fallback still works at any size
    x, pairs = _clustered(500, n_dup=5)
    res = knn(x, 3, exact_limit=100)
    assert res.backend == "ivf"
    assert (res.indices[pairs[:, 0], 0] == pairs[:, 1]).all()


def test_memo_shares_one_search_per_array() -> None:
    x, _ = _clustered(300)
    first = knn(x, 8)
    again = knn(x, 8)
    smaller = knn(x, 3)
    assert again is first
    np.testing.assert_array_equal(smaller.indices, first.indices[:, :3])
    assert knn(x, 8, metric="euclidean") is not first
    assert knn(x.copy(), 8) is not first
    clear_cache()
    assert knn(x, 8) is not first


def test_pixel_embedding_invariances() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(40, 200, (1, 1, 30, 30))
    images = np.concatenate(
        [base, base * 0.8 + 20, np.full_like(base, 77.0), rng.uniform(0, 255, base.shape)]
    ).astype(np.uint8)
    emb = pixel_embedding(images, size=8)
    assert emb.shape == (4, 64) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb[[0, 1, 3]], axis=1), 1.0, atol=1e-5)
    assert not emb[2].any()  # a constant image is an all-zero row
    res = knn(emb, 1)
    assert res.indices[0, 0] == 1 and res.distances[0, 0] < 1e-3  # brightness/contrast change
    assert res.distances[2, 0] == 1.0  # nothing is close to a blank image
    assert pixel_embedding(images[:, 0], size=64).shape == (4, 900)  # (N, S, S), S < size


def test_robust_center_scale() -> None:
    med, s = robust_center_scale(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert med == 3.0 and s == pytest.approx(1.4826)
    med, s = robust_center_scale(np.array([0.0] * 8 + [1.0, 3.0]))
    assert med == 0.0 and s == pytest.approx(1.2533 * 0.4)  # MAD 0: mean-deviation fallback
    assert robust_center_scale(np.ones(4)) == (1.0, 0.0)
