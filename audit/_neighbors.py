"""Nearest-neighbour search shared by the duplicate and outlier checks.

:func:`knn` returns the ``k`` nearest *other* rows of every row of a feature
matrix (a self-join). It works in three steps:

1. **Candidates.** ``exact``: brute force, float32 matrix products in blocks of
   ``chunk_rows x db_chunk_rows`` (memory bounded, never an N x N matrix).
   ``ivf``: an inverted-file index in pure numpy (Jégou et al. 2011): rows are
   projected on their first ``reduce_dim`` principal components, clustered by
   k-means into ``n_lists`` cells, and each cell's rows are compared with the
   rows of the ``n_probe`` cells whose centroids are nearest to it (itself
   included) and with the rows whose *second*-nearest centroid it is, so that
   two near-identical rows on either side of a cell border still meet.
   BLAS runs on one thread there: for these many small products thread
   start-up costs more than it saves.
   ``hnswlib``: a hierarchical navigable small-world graph (Malkov & Yashunin
   2018) from the optional ``hnswlib`` package.
2. **Exact re-ranking.** The candidates are re-scored with the exact metric in
   the original space from row differences (not from ``1 - a.b``, which loses
   the small distances of near-duplicates to float32 cancellation), so every
   returned distance is exact even when an approximate backend missed a
   neighbour.
3. **Memo.** Results are remembered per input array (by identity, dropped when
   the array is garbage collected), so two checks asking for the neighbours of
   the same embeddings share one search.

``backend="auto"`` uses ``exact`` up to ``exact_limit`` rows (by default as
many as keep the brute-force work ``N**2 * D`` within :data:`EXACT_MAX_WORK`
multiply-adds: about 10,000 rows of 512-d or 28,000 of 64-d) and ``ivf`` above
it. ``hnswlib`` is never chosen automatically (on our benchmarks the numpy
inverted file was faster for this all-rows self-join at similar duplicate
recall); ask for it explicitly. :func:`backend_available` says whether a
backend can run, and an unavailable one raises :class:`ImportError` naming the
package to install.

:func:`pixel_embedding` turns an image cache into a small feature matrix
(block-averaged, mean-centred, unit norm), so the checks work straight after
ingestion, before any model exists.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

try:  # a dependency of scikit-learn; without it BLAS keeps its default threads
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # pragma: no cover
    _threadpool_limits = None

__all__ = [
    "BACKENDS",
    "EXACT_MAX_WORK",
    "MSG_BACKEND_MISSING",
    "Backend",
    "Metric",
    "Neighbors",
    "available_backends",
    "backend_available",
    "clear_cache",
    "knn",
    "pixel_embedding",
    "require_backend",
    "resolve_backend",
    "robust_center_scale",
    "rows_per_chunk",
]

Metric = Literal["cosine", "euclidean"]
Backend = Literal["auto", "exact", "ivf", "hnswlib"]
#: Concrete backends (``auto`` resolves to one of them).
BACKENDS: tuple[str, ...] = ("exact", "ivf", "hnswlib")
#: Largest brute-force work ``N**2 * D`` (multiply-adds) that ``auto`` accepts when
#: no row limit is given: a few seconds on two cores.
EXACT_MAX_WORK = 5e10

#: Optional backends: import name and the command that installs it.
_OPTIONAL: dict[str, tuple[str, str]] = {"hnswlib": ("hnswlib", "pip install hnswlib")}

MSG_BACKEND_MISSING = (
    "nearest-neighbour backend {backend!r} needs the optional package {package!r}, "
    "which is not installed; install it with `{install}`, or use backend='auto' "
    "(pure numpy: exact below the size limit, inverted file above it)"
)
MSG_UNKNOWN_BACKEND = "unknown nearest-neighbour backend {backend!r}; valid backends: {valid}"
MSG_UNKNOWN_METRIC = "unknown metric {metric!r}; valid metrics: {valid}"
MSG_BAD_FEATURES = (
    "nearest-neighbour features must be a 2-D numeric array (N, D) without NaN or "
    "infinity; got {what}"
)
MSG_BAD_GROUPS = "groups must have one entry per row: expected shape ({n},), got {shape}"

# Candidates kept per row before exact re-ranking: k + margin (exact search) or
# 2k (approximate search, whose reduced-space distances are distorted).
_EXACT_MARGIN = 2


def _module_available(module: str) -> bool:
    """Whether ``module`` can be imported (kept separate so tests can patch it)."""
    return importlib.util.find_spec(module) is not None


def backend_available(backend: str) -> bool:
    """Whether a nearest-neighbour backend can run here.

    Parameters
    ----------
    backend : {'auto', 'exact', 'ivf', 'hnswlib'}
        ``auto``, ``exact`` and ``ivf`` are pure numpy and always available.

    Raises
    ------
    ValueError
        For an unknown backend name.
    """
    if backend in ("auto", "exact", "ivf"):
        return True
    if backend in _OPTIONAL:
        return _module_available(_OPTIONAL[backend][0])
    raise ValueError(MSG_UNKNOWN_BACKEND.format(backend=backend, valid=list(get_args(Backend))))


def available_backends() -> list[str]:
    """Concrete backends that can run here, e.g. ``['exact', 'ivf', 'hnswlib']``."""
    return [b for b in BACKENDS if backend_available(b)]


def require_backend(backend: str) -> None:
    """Raise :class:`ImportError` naming the package when ``backend`` cannot run."""
    if not backend_available(backend):
        package, install = _OPTIONAL[backend]
        raise ImportError(
            MSG_BACKEND_MISSING.format(backend=backend, package=package, install=install)
        )


def _exact_rows(d: int, exact_limit: int | None) -> int:
    if exact_limit is not None:
        return int(exact_limit)
    return int(math.sqrt(EXACT_MAX_WORK / max(d, 1)))


def resolve_backend(
    backend: Backend | str, n: int, *, exact_limit: int | None = None, d: int = 512
) -> str:
    """The concrete backend ``auto`` means for ``n`` rows of ``d`` features.

    Other names are checked (known, installed) and returned unchanged.

    Raises
    ------
    ValueError
        For an unknown backend name.
    ImportError
        When an optional backend is not installed.
    """
    if backend == "auto":
        return "exact" if n <= _exact_rows(d, exact_limit) else "ivf"
    if backend not in BACKENDS:
        raise ValueError(MSG_UNKNOWN_BACKEND.format(backend=backend, valid=list(get_args(Backend))))
    require_backend(backend)
    return backend


@dataclass(frozen=True)
class Neighbors:
    """The ``k`` nearest other rows of every row.

    Attributes
    ----------
    indices : numpy.ndarray
        ``(N, k)`` int64 row numbers, nearest first; ``-1`` where a row has fewer
        than ``k`` neighbours (only with ``groups`` smaller than ``k + 1``).
    distances : numpy.ndarray
        ``(N, k)`` float32 exact distances, ascending; ``inf`` where ``indices``
        is ``-1``. Cosine distance is ``1 - cos`` in ``[0, 2]`` (``1`` for an
        all-zero row); euclidean is the L2 norm of the difference.
    metric : str
        ``'cosine'`` or ``'euclidean'``.
    backend : str
        The concrete backend used (``'exact'``, ``'ivf'`` or ``'hnswlib'``).
    params : dict
        Settings that matter for reproducing the search (JSON-ready).
    """

    indices: np.ndarray
    distances: np.ndarray
    metric: str
    backend: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """Whether the neighbour sets are exact (not only their distances)."""
        return self.backend == "exact"

    @property
    def k(self) -> int:
        """Number of neighbours per row."""
        return int(self.indices.shape[1])

    def head(self, k: int) -> Neighbors:
        """The first ``k`` neighbours of every row (a view)."""
        return Neighbors(
            self.indices[:, :k], self.distances[:, :k], self.metric, self.backend,
            {**self.params, "k": min(k, self.k)},
        )  # fmt: skip

    def describe(self) -> str:
        """One line for a finding's ``method`` evidence."""
        if self.backend == "exact":
            how = "exact brute-force search"
        elif self.backend == "ivf":
            p = self.params
            how = (
                f"approximate inverted-file search (numpy; {p.get('n_lists')} k-means cells on "
                f"{p.get('search_dim')} principal components, {p.get('n_probe')} cells probed "
                "plus second-nearest-cell rows)"
            )
        else:
            how = "approximate HNSW graph search (hnswlib)"
        return f"{self.k}-nearest neighbours by {self.metric} distance, {how}, exact re-ranking"


# --------------------------------------------------------------------------- validation
def _check_features(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != 2 or x.dtype.kind not in "fiub":
        raise ValueError(MSG_BAD_FEATURES.format(what=f"shape {x.shape}, dtype {x.dtype}"))
    return x


def _check_finite_chunks(x: np.ndarray, chunk_rows: int) -> None:
    if x.dtype.kind != "f":
        return
    for s in range(0, x.shape[0], chunk_rows * 16):
        block = np.asarray(x[s : s + chunk_rows * 16])
        if not np.isfinite(block).all():
            bad = s + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise ValueError(MSG_BAD_FEATURES.format(what=f"a non-finite value in row {bad}"))


# --------------------------------------------------------------------------- row access
class _Rows:
    """Float32 rows of ``x`` prepared for the metric (unit norm for cosine), on demand.

    Never copies the whole matrix: rows are gathered and converted per block.
    """

    def __init__(self, x: np.ndarray, metric: str, chunk_rows: int) -> None:
        self.x = x
        self.metric = metric
        self.n, self.d = x.shape
        if metric == "cosine":
            norms = np.empty(self.n, dtype=np.float32)
            for s in range(0, self.n, chunk_rows * 16):
                block = np.asarray(x[s : s + chunk_rows * 16], dtype=np.float32)
                norms[s : s + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block))
            self.norms = norms
            self.inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-30), 0.0).astype(np.float32)
            self.zero = norms == 0

    def take(self, idx: np.ndarray | slice) -> np.ndarray:
        """Prepared rows ``idx`` as float32, shape ``(len(idx), D)``."""
        block = np.asarray(self.x[idx], dtype=np.float32)
        if self.metric == "cosine":
            if isinstance(idx, slice):  # may be a view of the caller's array: no in-place
                block = block * self.inv[idx][:, None]
            else:  # fancy indexing already copied
                block *= self.inv[idx][:, None]
        return block


# --------------------------------------------------------------------------- top-k search
def _merge_topk(
    best_d: np.ndarray, best_i: np.ndarray, d: np.ndarray, i: np.ndarray, kc: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``kc`` smallest of two candidate sets per row (unsorted)."""
    if d.shape[1] > kc:
        part = np.argpartition(d, kc - 1, axis=1)[:, :kc]
        d = np.take_along_axis(d, part, 1)
        i = np.take_along_axis(i, part, 1)
    if best_d.shape[1] == 0:
        return d, i
    d = np.concatenate([best_d, d], axis=1)
    i = np.concatenate([best_i, i], axis=1)
    if d.shape[1] > kc:
        part = np.argpartition(d, kc - 1, axis=1)[:, :kc]
        d = np.take_along_axis(d, part, 1)
        i = np.take_along_axis(i, part, 1)
    return d, i


def _one_blas_thread() -> Any:
    """Context: BLAS on one thread. The inverted file multiplies many small
    matrices, for which thread start-up costs more than it saves (measured up to
    25x slower with two threads on a shared two-core machine)."""
    if _threadpool_limits is None:  # pragma: no cover
        from contextlib import nullcontext

        return nullcontext()
    return _threadpool_limits(limits=1, user_api="blas")


def _search(
    qv: np.ndarray,
    cv_neg2: np.ndarray,
    csq: np.ndarray,
    c_idx: np.ndarray,
    self_col: np.ndarray,
    kc: int,
    db_chunk_rows: int,
) -> np.ndarray:
    """Row numbers of the ``kc`` nearest candidates (euclidean) of each query.

    Parameters
    ----------
    qv : (m, r) float32 query vectors.
    cv_neg2 : (n, r) float32 candidate vectors times -2; csq : (n,) their squared norms.
    c_idx : (n,) candidate row numbers.
    self_col : (m,) position of each query among the candidates (-1 if absent); excluded.

    Returns
    -------
    (m, min(kc, n)) row numbers, unsorted; -1 where fewer valid candidates exist.
    The ranking key ``|c|^2 - 2 q.c`` drops the per-row constant ``|q|^2``.
    """
    m = qv.shape[0]
    rows = np.arange(m)
    best_d = np.empty((m, 0), np.float32)
    best_i = np.empty((m, 0), np.int64)
    for s in range(0, cv_neg2.shape[0], db_chunk_rows):
        block = cv_neg2[s : s + db_chunk_rows]
        d = qv @ block.T
        d += csq[None, s : s + block.shape[0]]
        inside = (self_col >= s) & (self_col < s + block.shape[0])
        d[rows[inside], self_col[inside] - s] = np.inf  # a row is not its own neighbour
        bidx = c_idx[s : s + block.shape[0]]
        best_d, best_i = _merge_topk(best_d, best_i, d, np.broadcast_to(bidx, d.shape), kc)
    return np.where(np.isinf(best_d), -1, best_i)


def _prepare_candidates(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``-2 v`` and the squared row norms of ``v`` (float32)."""
    return v * np.float32(-2.0), np.einsum("ij,ij->i", v, v)


def _exact_candidates(rows: _Rows, kc: int, chunk_rows: int, db_chunk_rows: int) -> np.ndarray:
    n = rows.n
    space = rows.take(slice(0, n))
    neg2, csq = _prepare_candidates(space)
    all_idx = np.arange(n, dtype=np.int64)
    out = np.empty((n, kc), np.int64)
    for s in range(0, n, chunk_rows):
        q = all_idx[s : s + chunk_rows]
        out[q] = _search(space[q], neg2, csq, all_idx, q, kc, db_chunk_rows)
    return out


def _reduce(rows: _Rows, reduce_dim: int, chunk_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Rows in the search space: the first ``reduce_dim`` principal components.

    Returns ``(N, r)`` float32; the prepared rows themselves when ``D <= reduce_dim``.
    """
    n, d = rows.n, rows.d
    if d <= reduce_dim:
        return rows.take(slice(0, n))
    sample = np.sort(rng.choice(n, size=min(n, 20_000), replace=False))
    s = rows.take(sample).astype(np.float64)
    mean = s.mean(axis=0)
    s -= mean
    # principal axes from the D x D covariance (cheaper than an SVD of the sample)
    _, vecs = np.linalg.eigh(s.T @ s)
    basis = vecs[:, ::-1][:, :reduce_dim].astype(np.float32)
    mean32 = mean.astype(np.float32)
    out = np.empty((n, reduce_dim), np.float32)
    step = chunk_rows * 8
    for a in range(0, n, step):
        out[a : a + step] = (rows.take(slice(a, a + step)) - mean32) @ basis
    return out


def _kmeans(
    y: np.ndarray, n_lists: int, rng: np.random.Generator, *, iters: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lloyd's k-means on a sample of ``20 * n_lists`` rows.

    Returns
    -------
    centroids ``(L, r)``, nearest ``(N,)`` and second-nearest ``(N,)`` centroid of every row.
    """
    n = y.shape[0]
    sample = y[np.sort(rng.choice(n, size=min(n, 20 * n_lists), replace=False))]
    cent = sample[rng.choice(sample.shape[0], size=n_lists, replace=False)].copy()

    def assign(v: np.ndarray, two: bool) -> tuple[np.ndarray, np.ndarray]:
        first = np.empty(v.shape[0], np.int64)
        second = np.empty(v.shape[0] if two else 0, np.int64)
        neg2, csq = _prepare_candidates(cent)
        for a in range(0, v.shape[0], 16_384):
            d = v[a : a + 16_384] @ neg2.T
            d += csq[None, :]
            first[a : a + 16_384] = f = np.argmin(d, axis=1)
            if two and n_lists > 1:
                d[np.arange(d.shape[0]), f] = np.inf
                second[a : a + 16_384] = np.argmin(d, axis=1)
        if two and n_lists == 1:
            second[:] = first
        return first, second

    for _ in range(iters):
        lab, _ = assign(sample, False)
        counts = np.bincount(lab, minlength=n_lists)
        order = np.argsort(lab, kind="stable")
        present = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[present]
        empty = counts == 0
        new = np.empty_like(cent)
        new[present] = np.add.reduceat(sample[order], starts, axis=0) / counts[present, None]
        cent = new
        if empty.any():  # re-seed empty cells on random sample rows
            cent[empty] = sample[rng.choice(sample.shape[0], size=int(empty.sum()), replace=False)]
    first, second = assign(y, True)
    return cent, first, second


def _ivf_candidates(rows: _Rows, kc: int, **kwargs: Any) -> np.ndarray:
    """:func:`_ivf_search` with BLAS limited to one thread (see :func:`_one_blas_thread`)."""
    with _one_blas_thread():
        return _ivf_search(rows, kc, n=rows.n, **kwargs)


def _ivf_search(
    rows: _Rows,
    kc: int,
    *,
    reduce_dim: int,
    n_lists: int | None,
    n_probe: int,
    chunk_rows: int,
    db_chunk_rows: int,
    rng: np.random.Generator,
    params: dict[str, Any],
    n: int,
) -> np.ndarray:
    y = _reduce(rows, reduce_dim, chunk_rows, rng)
    lists = n_lists or int(np.clip(round(2 * math.sqrt(n)), 1, 4096))
    lists = max(1, min(lists, n // max(kc + 1, 1)))
    cent, lab, lab2 = _kmeans(y, lists, rng)

    def inverted(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(labels, kind="stable")
        return order, np.searchsorted(labels[order], np.arange(lists + 1))

    order, starts = inverted(lab)
    order2, starts2 = inverted(lab2)
    sizes = np.diff(starts)
    neg2, csq = _prepare_candidates(cent)
    near = np.argsort(cent @ neg2.T + csq[None, :], axis=1)
    out = np.full((n, kc), -1, np.int64)
    for c in range(lists):
        if sizes[c] == 0:
            continue
        # the cell itself first, then its nearest cells: n_probe in all, more if
        # they hold fewer than kc + 1 rows
        probe = np.concatenate([[c], near[c][near[c] != c]])
        n_cells = max(n_probe, int(np.searchsorted(np.cumsum(sizes[probe]), kc + 1)) + 1)
        probe = probe[:n_cells]
        # rows whose second-nearest cell is c ("spill"): a near-copy across a cell
        # border is then found even when its own cell is not probed
        spill = order2[starts2[c] : starts2[c + 1]]
        spill = spill[~np.isin(lab[spill], probe)]
        cand = np.concatenate([order[starts[p] : starts[p + 1]] for p in probe] + [spill])
        cv_neg2, ccsq = _prepare_candidates(y[cand])
        members = cand[: sizes[c]]  # the cell's own rows come first
        for a in range(0, members.size, chunk_rows):
            q = members[a : a + chunk_rows]
            self_col = np.arange(a, a + q.size)
            idx = _search(y[q], cv_neg2, ccsq, cand, self_col, kc, db_chunk_rows)
            out[q, : idx.shape[1]] = idx
    params.update(n_lists=lists, n_probe=n_probe, search_dim=int(y.shape[1]))
    return out


def _hnsw_candidates(rows: _Rows, kc: int, chunk_rows: int, params: dict[str, Any]) -> np.ndarray:
    import hnswlib

    n = rows.n
    # all-zero rows (cosine) are equidistant from everything: as graph nodes they
    # become hubs that wreck the search, and as neighbours they are all alike
    ids = np.flatnonzero(~rows.zero) if rows.metric == "cosine" else np.arange(n)
    out = np.full((n, kc), -1, np.int64)
    kq = min(kc + 1, ids.size)
    if kq == 0:
        return out
    m, ef_construction = 16, 100
    index = hnswlib.Index(space="l2", dim=rows.d)
    index.init_index(max_elements=ids.size, ef_construction=ef_construction, M=m, random_seed=0)
    step = chunk_rows * 8
    for a in range(0, ids.size, step):
        index.add_items(rows.take(ids[a : a + step]), ids[a : a + step])
    ef = max(2 * kq, 64)
    index.set_ef(ef)
    for a in range(0, n, step):
        got, _ = index.knn_query(rows.take(slice(a, a + step)), k=kq)
        got = got.astype(np.int64)
        own = np.arange(a, a + got.shape[0])[:, None]
        # drop the row itself (or the last hit when exact copies pushed it out)
        keep = got != own
        keep[keep.all(axis=1), -1] = False
        kept = got[keep].reshape(got.shape[0], -1)[:, :kc]
        out[a : a + got.shape[0], : kept.shape[1]] = kept
    params.update(M=m, ef_construction=ef_construction, ef=ef)
    return out


def _rerank(rows: _Rows, cand: np.ndarray, k: int, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances of the candidates from row differences; ``k`` best, ascending."""
    n, kc = cand.shape
    out_i = np.full((n, k), -1, np.int64)
    out_d = np.full((n, k), np.inf, np.float32)
    step = max(1, min(chunk_rows, (32 << 20) // max(1, kc * rows.d * 4)))
    for a in range(0, n, step):
        c = cand[a : a + step]
        valid = c >= 0
        own = np.arange(a, a + c.shape[0])
        qv = rows.take(slice(a, a + c.shape[0]))
        cv = rows.take(np.where(valid, c, 0).ravel()).reshape(c.shape[0], kc, rows.d)
        cv -= qv[:, None, :]
        d2 = np.einsum("ijk,ijk->ij", cv, cv)
        if rows.metric == "cosine":
            d = d2 * 0.5
            zero = rows.zero[own][:, None] | rows.zero[np.where(valid, c, 0)]
            d[zero] = 1.0
        else:
            d = np.sqrt(d2)
        d[~valid | (c == own[:, None])] = np.inf
        kk = min(k, kc)
        part = np.argsort(d, axis=1, kind="stable")[:, :kk]
        out_d[a : a + c.shape[0], :kk] = np.take_along_axis(d, part, 1)
        out_i[a : a + c.shape[0], :kk] = np.take_along_axis(c, part, 1)
    out_i[np.isinf(out_d)] = -1
    return out_i, out_d


def _knn_one(
    x: np.ndarray,
    k: int,
    *,
    metric: str,
    backend: str,
    reduce_dim: int,
    n_lists: int | None,
    n_probe: int,
    chunk_rows: int,
    db_chunk_rows: int,
    seed: int,
    params: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    k_eff = min(k, n - 1)
    if k_eff <= 0:
        return np.full((n, k), -1, np.int64), np.full((n, k), np.inf, np.float32)
    rows = _Rows(x, metric, chunk_rows)
    rng = np.random.default_rng(seed)
    if backend == "exact":
        kc = min(k_eff + _EXACT_MARGIN, n - 1)
        cand = _exact_candidates(rows, kc, chunk_rows, db_chunk_rows)
    elif backend == "ivf":
        kc = min(2 * k_eff, n - 1)
        cand = _ivf_candidates(
            rows, kc, reduce_dim=reduce_dim, n_lists=n_lists, n_probe=n_probe,
            chunk_rows=chunk_rows, db_chunk_rows=db_chunk_rows, rng=rng, params=params,
        )  # fmt: skip
    else:
        kc = min(2 * k_eff, n - 1)
        cand = _hnsw_candidates(rows, kc, chunk_rows, params)
    with _one_blas_thread():
        idx, dist = _rerank(rows, cand, k_eff, chunk_rows)
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        dist = np.pad(dist, ((0, 0), (0, k - k_eff)), constant_values=np.inf)
    return idx, dist


# --------------------------------------------------------------------------- memo
_MEMO: OrderedDict[int, dict[tuple[Any, ...], Neighbors]] = OrderedDict()
_MEMO_MAX_ARRAYS = 4


def clear_cache() -> None:
    """Forget every remembered neighbour search."""
    _MEMO.clear()


def _memo_get(x: np.ndarray, key: tuple[Any, ...], k: int) -> Neighbors | None:
    entry = _MEMO.get(id(x))
    hit = entry.get(key) if entry else None
    if hit is None or hit.k < k:
        return None
    _MEMO.move_to_end(id(x))
    return hit.head(k) if hit.k > k else hit


def _memo_put(x: np.ndarray, key: tuple[Any, ...], value: Neighbors) -> None:
    xid = id(x)
    if xid not in _MEMO:
        try:
            weakref.finalize(x, _MEMO.pop, xid, None)
        except TypeError:  # an object that cannot be weakly referenced: do not remember
            return
        _MEMO[xid] = {}
    _MEMO[xid][key] = value
    _MEMO.move_to_end(xid)
    while len(_MEMO) > _MEMO_MAX_ARRAYS:
        _MEMO.popitem(last=False)


# --------------------------------------------------------------------------- public
def knn(
    x: np.ndarray,
    k: int,
    *,
    metric: Metric = "cosine",
    backend: Backend = "auto",
    groups: np.ndarray | None = None,
    exact_limit: int | None = None,
    reduce_dim: int = 64,
    n_lists: int | None = None,
    n_probe: int = 8,
    chunk_rows: int = 1024,
    db_chunk_rows: int = 8192,
    seed: int = 0,
    use_cache: bool = True,
) -> Neighbors:
    """The ``k`` nearest other rows of every row of ``x`` (self excluded).

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, D)`` features (any real dtype; a memory map is fine). Computation
        is float32.
    k : int
        Neighbours per row; rows with fewer than ``k`` possible neighbours are
        padded with index ``-1`` and distance ``inf``.
    metric : {'cosine', 'euclidean'}
        Cosine distance ``1 - cos`` (all-zero rows are at distance 1 from
        everything) or euclidean distance.
    backend : {'auto', 'exact', 'ivf', 'hnswlib'}
        ``auto``: ``exact`` for at most ``exact_limit`` rows (per group), else ``ivf``.
    groups : numpy.ndarray, optional
        ``(N,)`` labels; neighbours are searched only among rows of the same
        group (e.g. rows embedded by the same fold model).
    exact_limit : int, optional
        Largest number of rows searched by brute force under ``auto``; default:
        as many as keep ``N**2 * D`` within :data:`EXACT_MAX_WORK` (about 10,000
        rows of 512-d features, 28,000 of 64-d).
    reduce_dim : int
        ``ivf``: principal components of the search space (candidates only;
        returned distances are exact).
    n_lists, n_probe : int
        ``ivf``: k-means cells (default ``2 sqrt(N)``, at most 4096) and cells
        probed per cell.
    chunk_rows, db_chunk_rows : int
        Query rows and database rows per matrix-product block (memory is about
        ``4 * chunk_rows * db_chunk_rows`` bytes).
    seed : int
        Seed of the ``ivf`` sampling and k-means.
    use_cache : bool
        Reuse an earlier search of the same array object with the same settings.

    Returns
    -------
    Neighbors
        ``indices`` and ``distances`` of shape ``(N, k)``, nearest first.

    Raises
    ------
    ValueError
        For a bad array, metric, backend, ``k`` or ``groups``.
    ImportError
        When ``backend='hnswlib'`` and the package is not installed.
    """
    x = _check_features(x)
    if metric not in get_args(Metric):
        raise ValueError(MSG_UNKNOWN_METRIC.format(metric=metric, valid=list(get_args(Metric))))
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    k = int(k)
    n = x.shape[0]
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(MSG_BAD_GROUPS.format(n=n, shape=groups.shape))
    # validate the backend name (and availability) before any work
    largest = n if groups is None or n == 0 else int(np.unique(groups, return_counts=True)[1].max())
    d = int(x.shape[1])
    resolved = resolve_backend(backend, largest, exact_limit=exact_limit, d=d)
    gkey = None if groups is None else hashlib.blake2b(groups.tobytes(), digest_size=16).hexdigest()
    key = (x.shape, str(x.dtype), metric, backend, gkey, exact_limit, reduce_dim, n_lists,
           n_probe, seed)  # fmt: skip
    if use_cache:
        hit = _memo_get(x, key, k)
        if hit is not None:
            return hit
    _check_finite_chunks(x, chunk_rows)
    params: dict[str, Any] = {"k": k, "metric": metric, "backend": resolved}
    settings = dict(
        metric=metric, reduce_dim=reduce_dim, n_lists=n_lists, n_probe=n_probe,
        chunk_rows=chunk_rows, db_chunk_rows=db_chunk_rows, seed=seed, params=params,
    )  # fmt: skip
    if groups is None:
        idx, dist = _knn_one(x, k, backend=resolved, **settings)  # type: ignore[arg-type]
    else:
        idx = np.full((n, k), -1, np.int64)
        dist = np.full((n, k), np.inf, np.float32)
        used: set[str] = set()
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            sub_backend = resolve_backend(backend, rows.size, exact_limit=exact_limit, d=d)
            used.add(sub_backend)
            gi, gd = _knn_one(np.asarray(x[rows]), k, backend=sub_backend, **settings)  # type: ignore[arg-type]
            idx[rows] = np.where(gi >= 0, rows[np.maximum(gi, 0)], -1)
            dist[rows] = gd
        resolved = "exact" if used == {"exact"} else resolved
        params.update(backend=resolved, n_groups=int(np.unique(groups).size))
    result = Neighbors(idx, dist, metric, resolved, params)
    if use_cache:
        _memo_put(x, key, result)
    return result


# --------------------------------------------------------------------------- pixels
def _bin_starts(size: int, out: int) -> np.ndarray:
    """First index of each of ``out`` near-equal bins of ``range(size)``."""
    return np.unique((np.arange(out) * size) // out)


def rows_per_chunk(images: np.ndarray, *, values: int = 1 << 24, most: int = 4096) -> int:
    """Rows of an image cache holding about ``values`` pixel values (1 to ``most``)."""
    per_row = int(np.prod(images.shape[1:])) or 1
    return int(max(1, min(most, values // per_row)))


_PIXEL_MEMO: OrderedDict[int, dict[tuple[Any, ...], np.ndarray]] = OrderedDict()


def pixel_embedding(
    images: np.ndarray,
    *,
    size: int = 16,
    chunk_rows: int | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """Downsampled-pixel features of an image cache.

    Each image is averaged over near-equal blocks to ``size x size`` per
    channel, flattened, mean-centred and scaled to unit norm, so the cosine
    distance between two rows is ``1 - r`` with ``r`` the Pearson correlation of
    their block means: insensitive to brightness and contrast changes and, by
    the block averaging, to shifts of a pixel or two. Constant images give an
    all-zero row.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, S, S)`` (or ``(N, S, S)``) image cache, uint8 or float; a
        memory map is read in chunks of ``chunk_rows``.
    size : int
        Side of the downsampled image (``S`` when ``S < size``).
    chunk_rows : int, optional
        Images converted at once (default: about 16 M pixel values, <= 4096).
    use_cache : bool
        Reuse the embedding of the same array object.

    Returns
    -------
    numpy.ndarray
        ``(N, C * size**2)`` float32.
    """
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, S, S); got {images.shape}")
    key = (images.shape, str(images.dtype), size)
    if use_cache and id(images) in _PIXEL_MEMO and key in _PIXEL_MEMO[id(images)]:
        return _PIXEL_MEMO[id(images)][key]
    n, c, h, w = images.shape
    chunk_rows = chunk_rows or rows_per_chunk(images)
    rs, cs = _bin_starts(h, min(size, h)), _bin_starts(w, min(size, w))
    rcount = np.diff(np.append(rs, h)).astype(np.float32)
    ccount = np.diff(np.append(cs, w)).astype(np.float32)
    out = np.empty((n, c * rs.size * cs.size), np.float32)
    for a in range(0, n, chunk_rows):
        block = np.asarray(images[a : a + chunk_rows], dtype=np.float32)
        block = np.add.reduceat(np.add.reduceat(block, rs, axis=2), cs, axis=3)
        block /= rcount[:, None] * ccount[None, :]
        flat = block.reshape(block.shape[0], -1)
        scale = np.abs(flat).max(axis=1) + 1.0
        flat -= flat.mean(axis=1, keepdims=True)
        norm = np.sqrt(np.einsum("ij,ij->i", flat, flat))
        # constant images (block means varying by less than float32 noise) -> zero rows
        constant = norm <= 1e-4 * scale * math.sqrt(flat.shape[1])
        flat[constant] = 0.0
        norm[constant] = 1.0
        out[a : a + block.shape[0]] = flat / norm[:, None]
    if use_cache:
        try:
            if id(images) not in _PIXEL_MEMO:
                weakref.finalize(images, _PIXEL_MEMO.pop, id(images), None)
                _PIXEL_MEMO[id(images)] = {}
            _PIXEL_MEMO[id(images)][key] = out
            while len(_PIXEL_MEMO) > _MEMO_MAX_ARRAYS:
                _PIXEL_MEMO.popitem(last=False)
        except TypeError:
            pass
    return out


# --------------------------------------------------------------------------- robust scale
def robust_center_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and a robust standard deviation of ``values``.

    The scale is ``1.4826 * MAD`` (consistent with the standard deviation for
    normal data; Rousseeuw & Croux 1993); when the MAD is zero (more than half
    the values equal) it falls back to ``1.2533 * mean absolute deviation from
    the median`` (the same consistency for the mean deviation; Iglewicz &
    Hoaglin 1993), and is ``0`` only for a constant sample.

    Parameters
    ----------
    values : numpy.ndarray
        ``(M,)`` finite values, ``M >= 1``.

    Returns
    -------
    (float, float)
        Median and scale.
    """
    v = np.asarray(values, dtype=np.float64)
    med = float(np.median(v))
    dev = np.abs(v - med)
    mad = float(np.median(dev))
    if mad > 0:
        return med, 1.4826 * mad
    return med, 1.2533 * float(dev.mean())
