"""Tests of audit._neighbors: exact (scikit-learn) and inverted-file (faiss) kNN, pixel features."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from audit import _neighbors as nbrs
from audit._neighbors import (
    MSG_BACKEND_MISSING,
    backend_available,
    knn,
    pixel_embedding,
    resolve_backend,
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


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact neighbour sets that the approximate search found."""
    return float(np.mean([np.isin(a, e).mean() for a, e in zip(approx, exact)]))


@pytest.mark.parametrize("backend", ["exact", "ivf"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_matches_brute_force(metric: str, backend: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    x[7] = x[3]  # an exact copy
    x[11] = 0.0  # an all-zero row
    # a few cells probed out of a few: the inverted file is then exact too
    res = knn(x, 5, metric=metric, backend=backend, n_lists=4, n_probe=4, chunk_rows=64)
    ref = np.sort(_brute(x, metric), axis=1)[:, :5]
    assert res.indices.shape == (300, 5) and res.indices.dtype == np.int64
    assert res.distances.dtype == np.float32
    np.testing.assert_allclose(res.distances, ref, atol=2e-5)
    assert (res.indices != np.arange(300)[:, None]).all()  # never its own neighbour
    assert res.indices[7, 0] == 3 and res.distances[7, 0] == 0.0
    assert res.exact == (backend == "exact") and res.backend == backend
    assert np.all(np.diff(res.distances, axis=1) >= 0)
    if metric == "cosine":  # the zero row is at distance 1 from everything
        assert (res.distances[11] == 1.0).all()


def test_zero_rows_rank_at_distance_one() -> None:
    """An all-zero row is a neighbour exactly where cosine distance 1 ranks among the k nearest."""
    x = np.array([[1, 0], [-1, 0], [0, 0], [0, 0], [1, 0.01]], np.float32)
    for backend in ("exact", "ivf"):
        res = knn(x, 3, backend=backend, n_lists=1)
        assert res.indices[0].tolist() == [4, 2, 3]  # nearest copy, then the zero rows at 1
        np.testing.assert_allclose(res.distances[0], [5e-5, 1.0, 1.0], atol=1e-6)
        assert res.indices[1, :2].tolist() == [2, 3]  # everything else is farther than 1
        assert res.indices[2].tolist()[0] == 3 and (res.distances[2] == 1.0).all()


@pytest.mark.parametrize("backend", ["exact", "ivf"])
def test_small_distances_are_precise(backend: str) -> None:
    """1e-7-level cosine distances survive (``1 - a.b`` in float32 would not)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 64)).astype(np.float64)
    x[1] = x[0] + 1e-4 * rng.normal(size=64)
    expected = _brute(x, "cosine")[1, 0]
    assert expected < 1e-7
    got = knn(x, 1, backend=backend, n_lists=1).distances[1, 0]
    assert got == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("d", [48, 128])  # 128-d goes through faiss's PCA to 64
def test_inverted_file_recall_against_exact(d: int) -> None:
    x, pairs = _clustered(4000, d=d)
    approx = knn(x, 10, backend="ivf")
    exact = knn(x, 10, backend="exact")
    assert approx.backend == "ivf" and not approx.exact
    assert approx.params["pca"] == (d > 64)
    # every planted copy is the nearest neighbour of its source, and vice versa
    assert (approx.indices[pairs[:, 0], 0] == pairs[:, 1]).all()
    assert (approx.indices[pairs[:, 1], 0] == pairs[:, 0]).all()
    assert _recall(approx.indices, exact.indices) > 0.97
    # returned distances are exact distances of possibly missed neighbours
    ratio = approx.distances.mean(1) / exact.distances.mean(1)
    assert ratio.min() >= 1 - 1e-5 and np.median(ratio) < 1.001
    found = approx.indices == exact.indices
    np.testing.assert_allclose(approx.distances[found], exact.distances[found], rtol=1e-4, atol=1e-6)
    assert "approximate" in approx.describe() and "faiss" in approx.describe()


def test_inverted_file_is_deterministic_and_restores_threads() -> None:
    x, _ = _clustered(3000)
    before = faiss.omp_get_max_threads()
    first = knn(x, 5, backend="ivf", seed=3)
    again = knn(x, 5, backend="ivf", seed=3, n_threads=1)
    np.testing.assert_array_equal(first.indices, again.indices)
    np.testing.assert_array_equal(first.distances, again.distances)
    assert again.params["n_threads"] == 1
    assert faiss.omp_get_max_threads() == before


def test_auto_switches_to_ivf_above_the_limit() -> None:
    x, _ = _clustered(600)
    assert knn(x, 3, exact_limit=1000).backend == "exact"
    assert knn(x, 3, exact_limit=100).backend == "ivf"
    assert resolve_backend("auto", 10**6) == "ivf"
    assert resolve_backend("auto", 9_000, d=512) == "exact"
    assert resolve_backend("auto", 12_000, d=512) == "ivf"
    assert resolve_backend("auto", 25_000, d=64) == "exact"


@pytest.mark.parametrize("exact_limit", [1000, 50])
def test_groups_restrict_neighbours_and_pad_small_groups(exact_limit: int) -> None:
    x, _ = _clustered(200)
    groups = np.repeat([0, 1, 2], [100, 97, 3])
    res = knn(x, 4, groups=groups, exact_limit=exact_limit)
    assert res.params["n_groups"] == 3
    for g in (0, 1, 2):
        rows = np.flatnonzero(groups == g)
        found = res.indices[rows]
        assert np.isin(found[found >= 0], rows).all()
        ref = np.sort(_brute(x[rows], "cosine"), axis=1)[:, :4]
        np.testing.assert_allclose(res.distances[rows][:, : min(4, rows.size - 1)],
                                   ref[:, : min(4, rows.size - 1)], atol=2e-5)  # fmt: skip
    small = res.indices[groups == 2]
    assert (small[:, 2:] == -1).all() and np.isinf(res.distances[groups == 2][:, 2:]).all()
    with pytest.raises(ValueError, match="one entry per row"):
        knn(x, 4, groups=groups[:-1])


def test_k_larger_than_data_is_padded() -> None:
    for backend in ("exact", "ivf"):
        res = knn(np.eye(3, dtype=np.float32), 5, backend=backend)
        assert res.indices.shape == (3, 5)
        assert (res.indices[:, 2:] == -1).all()
        assert np.isfinite(res.distances[:, :2]).all()
    assert (knn(np.ones((1, 2)), 2).indices == -1).all()


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
        knn(np.ones((5, 2)), 2, backend="hnswlib")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive integer"):
        knn(np.ones((5, 2)), 0)


def test_backend_packages_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backend_available("exact") and backend_available("ivf") and backend_available("auto")
    monkeypatch.setattr(nbrs, "_module_available", lambda name: name != "faiss")
    assert not backend_available("ivf") and not backend_available("auto")
    expected = MSG_BACKEND_MISSING.format(
        backend="ivf", package="faiss-cpu", install="pip install faiss-cpu"
    )
    with pytest.raises(ImportError) as err:
        knn(np.ones((5, 2)), 2, backend="ivf")
    assert str(err.value) == expected
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        resolve_backend("auto", 10**6)
    # small data under 'auto' needs only scikit-learn
    x, pairs = _clustered(300, n_dup=5)
    res = knn(x, 3)
    assert res.backend == "exact"
    assert (res.indices[pairs[:, 0], 0] == pairs[:, 1]).all()


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
    np.testing.assert_array_equal(pixel_embedding(images, size=8, chunk_rows=1), emb)
