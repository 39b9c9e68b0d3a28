"""Nearest-neighbour search shared by the duplicate and outlier checks.

:func:`knn` returns the ``k`` nearest *other* rows of every row of a feature
matrix (a self-join) with two backends:

``exact``
    scikit-learn's brute-force :class:`~sklearn.neighbors.NearestNeighbors`
    (euclidean; for cosine on unit-norm rows, where ``1 - cos = |a - b|**2 / 2``).
    scikit-learn accumulates float32 blocks in float64, so the 1e-7 cosine
    distances of near-copies are not lost to cancellation.
``ivf``
    faiss's inverted file ``IndexIVFFlat`` (Jégou, Douze & Schmid 2011): rows
    are clustered by k-means into ``n_lists`` cells and each row is compared
    with the rows of the ``n_probe`` cells nearest to it; above ``reduce_dim``
    features the rows are first projected on their principal components
    (``faiss.PCAMatrix``). Rows are searched in the order of their cell, so
    the lists they scan stay in cache. The ``2k`` candidates are re-ranked
    with exact distances from row differences in the original space, so every
    returned distance is exact even when a neighbour was missed.

``backend="auto"`` uses ``exact`` up to ``exact_limit`` rows (by default as many
as keep the brute-force work ``N**2 * D`` within :data:`EXACT_MAX_WORK`) and
``ivf`` above it.

Why faiss. It is maintained (Meta), ships binary wheels (``faiss-cpu``) for
Linux, macOS and Windows, and holds the whole approximate pipeline (PCA,
k-means, inverted file, graph indexes) in one library whose OpenMP threads can
be set per call. hnswlib is published as source only (installing it compiles
C++) and releases rarely; pynndescent needs numba, whose just-in-time
compilation adds seconds to every fresh process and which supports new numpy
releases late. Within faiss the inverted file beats its HNSW graph for this
task: the search is a one-off join of all rows with themselves, so the index is
built once per search, and an HNSW graph costs more to build than the whole
inverted-file search, and is not reproducible when built on several threads;
the inverted file is, given ``seed``.

All-zero rows under the cosine metric (constant images) are at distance 1 from
every row, themselves included; they are kept out of the index and merged in
at distance 1 where they rank among the ``k`` nearest.

:func:`pixel_embedding` turns an image cache into a small feature matrix
(block-averaged, mean-centred, unit norm), so the checks work straight after
ingestion, before any model exists.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

__all__ = [
    "BACKENDS",
    "EXACT_MAX_WORK",
    "MSG_BACKEND_MISSING",
    "Backend",
    "Metric",
    "Neighbors",
    "backend_available",
    "knn",
    "pixel_embedding",
    "resolve_backend",
    "rows_per_chunk",
]

Metric = Literal["cosine", "euclidean"]
Backend = Literal["auto", "exact", "ivf"]
#: Concrete backends (``auto`` resolves to one of them).
BACKENDS: tuple[str, ...] = ("exact", "ivf")
#: Largest brute-force work ``N**2 * D`` (multiply-adds) that ``auto`` accepts when
#: no row limit is given: a few seconds on two cores.
EXACT_MAX_WORK = 5e10

#: Package each backend imports, and how to install it.
_PACKAGES: dict[str, tuple[str, str, str]] = {
    "exact": ("sklearn", "scikit-learn", "pip install scikit-learn"),
    "ivf": ("faiss", "faiss-cpu", "pip install faiss-cpu"),
}

MSG_BACKEND_MISSING = (
    "nearest-neighbour backend {backend!r} needs the package {package!r}, which is not "
    "installed; install it with `{install}`"
)
MSG_UNKNOWN_BACKEND = "unknown nearest-neighbour backend {backend!r}; valid backends: {valid}"
MSG_UNKNOWN_METRIC = "unknown metric {metric!r}; valid metrics: {valid}"
MSG_BAD_FEATURES = (
    "nearest-neighbour features must be a 2-D numeric array (N, D) without NaN or "
    "infinity; got {what}"
)
MSG_BAD_GROUPS = "groups must have one entry per row: expected shape ({n},), got {shape}"

# Candidates per row that the inverted file hands to exact re-ranking, per neighbour.
_CANDIDATES_PER_NEIGHBOR = 2


def _module_available(module: str) -> bool:
    """Whether ``module`` can be imported (kept separate so tests can patch it)."""
    return importlib.util.find_spec(module) is not None


def backend_available(backend: str) -> bool:
    """Whether a nearest-neighbour backend can run here.

    Parameters
    ----------
    backend : {'auto', 'exact', 'ivf'}
        ``exact`` needs scikit-learn, ``ivf`` (and ``auto``, which may choose
        it) faiss; both are dependencies of medaudit.

    Raises
    ------
    ValueError
        For an unknown backend name.
    """
    if backend == "auto":
        return all(backend_available(b) for b in BACKENDS)
    if backend not in _PACKAGES:
        raise ValueError(MSG_UNKNOWN_BACKEND.format(backend=backend, valid=list(get_args(Backend))))
    return _module_available(_PACKAGES[backend][0])


def resolve_backend(
    backend: Backend | str, n: int, *, exact_limit: int | None = None, d: int = 512
) -> str:
    """The concrete backend ``backend`` means for ``n`` rows of ``d`` features.

    ``auto`` is ``exact`` for at most ``exact_limit`` rows (default: as many as
    keep ``n**2 * d`` within :data:`EXACT_MAX_WORK`), else ``ivf``.

    Raises
    ------
    ValueError
        For an unknown backend name.
    ImportError
        When the package the backend needs is not installed (the message names it).
    """
    if backend == "auto":
        limit = int(exact_limit) if exact_limit is not None else int(math.sqrt(EXACT_MAX_WORK / max(d, 1)))
        backend = "exact" if n <= limit else "ivf"
    if not backend_available(backend):  # raises ValueError for unknown names
        _, package, install = _PACKAGES[backend]
        raise ImportError(MSG_BACKEND_MISSING.format(backend=backend, package=package, install=install))
    return backend


@dataclass(frozen=True)
class Neighbors:
    """The ``k`` nearest other rows of every row.

    Attributes
    ----------
    indices : numpy.ndarray
        ``(N, k)`` int64 row numbers, nearest first; ``-1`` where a row has fewer
        than ``k`` neighbours (fewer than ``k + 1`` rows, or in its group).
    distances : numpy.ndarray
        ``(N, k)`` float32 exact distances, ascending; ``inf`` where ``indices``
        is ``-1``. Cosine distance is ``1 - cos`` in ``[0, 2]`` (``1`` for an
        all-zero row); euclidean is the L2 norm of the difference.
    metric : str
        ``'cosine'`` or ``'euclidean'``.
    backend : str
        The concrete backend used (``'exact'`` or ``'ivf'``).
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

    def describe(self) -> str:
        """One line for a finding's ``method`` evidence."""
        if self.backend == "exact":
            how = "exact brute-force search (scikit-learn)"
        else:
            p = self.params
            space = (
                f"{p.get('search_dim')} principal components" if p.get("pca") else
                f"all {p.get('search_dim')} features"
            )  # fmt: skip
            how = (
                f"approximate inverted-file search (faiss IndexIVFFlat: {p.get('n_lists')} "
                f"k-means cells on {space}, {p.get('n_probe')} cells probed), exact re-ranking"
            )
        return f"{self.k}-nearest neighbours by {self.metric} distance, {how}"


# --------------------------------------------------------------------------- validation
def _check_features(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != 2 or x.dtype.kind not in "fiub":
        raise ValueError(MSG_BAD_FEATURES.format(what=f"shape {x.shape}, dtype {x.dtype}"))
    return x


def _check_finite(x: np.ndarray, chunk_rows: int) -> None:
    if x.dtype.kind != "f":
        return
    for s in range(0, x.shape[0], chunk_rows):
        finite = np.isfinite(np.asarray(x[s : s + chunk_rows])).all(axis=1)
        if not finite.all():
            bad = s + int(np.flatnonzero(~finite)[0])
            raise ValueError(MSG_BAD_FEATURES.format(what=f"a non-finite value in row {bad}"))


# --------------------------------------------------------------------------- row access
def _inverse_norms(x: np.ndarray, chunk_rows: int) -> np.ndarray:
    """``1 / |row|`` of every row of ``x``, float32 ``(N,)``; ``0`` for all-zero rows."""
    inv = np.empty(x.shape[0], np.float32)
    for s in range(0, x.shape[0], chunk_rows):
        block = np.asarray(x[s : s + chunk_rows], dtype=np.float32)
        norm = np.sqrt(np.einsum("ij,ij->i", block, block))
        inv[s : s + block.shape[0]] = np.where(norm > 0, 1.0 / np.maximum(norm, 1e-30), 0.0)
    return inv


def _prepared(x: np.ndarray, rows: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Rows ``rows`` of ``x`` as a new float32 ``(m, D)`` array, times ``scale[rows]`` if given."""
    block = np.array(x[rows], dtype=np.float32)
    if scale is not None:
        block *= scale[rows][:, None]
    return block


@contextlib.contextmanager
def _faiss_threads(n_threads: int | None) -> Iterator[int]:
    """faiss's OpenMP threads for one search, restored afterwards.

    Default: the CPUs this process may use (``joblib.cpu_count``: affinity mask
    and cgroup quota, which OpenMP's own default ignores in a container), at
    most OpenMP's default (which honours ``OMP_NUM_THREADS``).
    """
    import faiss
    from joblib import cpu_count

    before = faiss.omp_get_max_threads()
    threads = max(1, int(n_threads if n_threads is not None else min(before, cpu_count())))
    faiss.omp_set_num_threads(threads)
    try:
        yield threads
    finally:
        faiss.omp_set_num_threads(before)


# --------------------------------------------------------------------------- backends
def _exact_search(y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force self-join of the prepared rows ``y`` ``(m, D)``: euclidean, ``(m, k)``."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean").fit(y)
    dist, idx = nn.kneighbors()  # X=None: a row is not its own neighbour
    return idx.astype(np.int64), dist


def _ivf_candidates(
    x: np.ndarray,
    ids: np.ndarray,
    kc: int,
    *,
    scale: np.ndarray | None,
    reduce_dim: int,
    n_lists: int | None,
    n_probe: int,
    chunk_rows: int,
    seed: int,
    n_threads: int | None,
    params: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates from a faiss inverted file over the rows ``ids`` of ``x``.

    Rows are multiplied by ``scale`` (inverse norms for cosine) when given.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(len(ids), kc)`` positions in ``ids`` (``-1`` where fewer candidates
        exist; a row is never its own candidate), and the positions ordered by
        k-means cell.
    """
    import faiss

    n, d = ids.size, x.shape[1]
    rng = np.random.default_rng(seed)
    lists = n_lists or int(np.clip(round(2 * math.sqrt(n)), 1, 4096))
    lists = max(1, min(lists, n // (kc + 1)))
    train = ids[np.sort(rng.choice(n, size=min(n, max(20 * lists, 10_000)), replace=False))]
    pca = d > reduce_dim and train.size > reduce_dim
    step = chunk_rows * 8
    out = np.full((n, kc), -1, np.int64)
    with _faiss_threads(n_threads) as threads:
        sample = _prepared(x, train, scale)
        if pca:
            proj = faiss.PCAMatrix(d, reduce_dim)
            proj.train(sample)
            sample = proj.apply(sample)
            y = np.empty((n, reduce_dim), np.float32)
            for a in range(0, n, step):
                y[a : a + step] = proj.apply(_prepared(x, ids[a : a + step], scale))
        else:
            y = _prepared(x, ids, scale)
        index = faiss.index_factory(y.shape[1], f"IVF{lists},Flat", faiss.METRIC_L2)
        index.cp.seed = int(seed)
        index.cp.min_points_per_centroid = 1  # fewer training rows per cell than faiss likes: fine
        index.train(sample)
        index.add(y)
        index.nprobe = int(min(n_probe, lists))
        # queries of one cell together, so the lists they scan stay in cache
        _, cell = index.quantizer.search(y, 1)
        order = np.argsort(cell[:, 0], kind="stable")
        kq = min(kc + 1, n)
        for a in range(0, n, step):
            q = order[a : a + step]
            _, got = index.search(y[q], kq)
            keep = (got != q[:, None]) & (got >= 0)
            # drop the row itself, or the last hit when exact copies pushed it out
            keep[keep.sum(axis=1) > kc, -1] = False
            rows, cols = np.nonzero(keep)
            block = np.full((q.size, kc), -1, np.int64)
            block[rows, np.cumsum(keep, axis=1)[rows, cols] - 1] = got[rows, cols]
            out[q] = block
    params.update(n_lists=lists, n_probe=int(index.nprobe), search_dim=int(y.shape[1]),
                  pca=pca, n_threads=threads)  # fmt: skip
    return out, order


def _rerank(
    x: np.ndarray,
    ids: np.ndarray,
    cand: np.ndarray,
    order: np.ndarray,
    k: int,
    scale: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances of the candidates from row differences; the ``k`` best, ascending.

    ``cand`` ``(m, kc)`` holds positions in ``ids`` (``-1``: none); so does the
    returned ``(m, k)`` index array, next to float32 distances: cosine (``1 -
    cos`` of the rows times ``scale``, their inverse norms) when ``scale`` is
    given, else euclidean. Rows are taken in ``order`` (neighbours first), so
    that a block's candidates overlap and each is read once per block.
    """
    m, kc = cand.shape
    out_i = np.full((m, k), -1, np.int64)
    out_d = np.full((m, k), np.inf, np.float32)
    step = max(1, (32 << 20) // max(1, kc * x.shape[1] * 4))
    for a in range(0, m, step):
        p = order[a : a + step]
        c = cand[p]
        valid = c >= 0
        uniq, where = np.unique(np.where(valid, c, p[:, None]), return_inverse=True)
        cv = _prepared(x, ids[uniq], scale)[where.reshape(c.shape)]
        cv -= _prepared(x, ids[p], scale)[:, None, :]
        d2 = np.einsum("ijk,ijk->ij", cv, cv)
        d = d2 * 0.5 if scale is not None else np.sqrt(d2)
        d[~valid] = np.inf
        best = np.argsort(d, axis=1, kind="stable")[:, :k]
        out_d[p, : best.shape[1]] = np.take_along_axis(d, best, 1)
        out_i[p, : best.shape[1]] = np.take_along_axis(c, best, 1)
    out_i[np.isinf(out_d)] = -1
    return out_i, out_d


def _merge_zero_rows(
    idx: np.ndarray, dist: np.ndarray, rows: np.ndarray, zero: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Add the all-zero rows among ``rows`` at cosine distance 1 from every row.

    ``idx``, ``dist`` ``(m, k)`` are the neighbours of ``rows`` ``(m,)`` among the
    non-zero ones (``zero`` ``(m,)`` marks the others). A zero row's own
    neighbours are the other zero rows, then the first non-zero rows.
    """
    m, k = idx.shape
    idx, dist = idx.copy(), dist.copy()
    first = rows[~zero][:k]
    idx[zero, : first.size] = first
    dist[zero, : first.size] = 1.0
    z = rows[zero][: k + 1]  # enough for every row, one of them possibly the row itself
    all_i = np.concatenate([np.broadcast_to(z, (m, z.size)), idx], axis=1)
    all_d = np.concatenate([np.ones((m, z.size), np.float32), dist], axis=1)
    all_d[all_i == rows[:, None]] = np.inf
    best = np.argsort(all_d, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(all_d, best, 1)
    idx = np.where(np.isinf(dist), -1, np.take_along_axis(all_i, best, 1))
    return idx, dist


def _knn_rows(
    x: np.ndarray,
    rows: np.ndarray,
    k: int,
    *,
    backend: str,
    scale: np.ndarray | None,
    chunk_rows: int,
    params: dict[str, Any],
    **ivf: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of ``rows`` among ``rows``: ``(m, k)`` row numbers of ``x`` and distances."""
    m = rows.size
    idx = np.full((m, k), -1, np.int64)
    dist = np.full((m, k), np.inf, np.float32)
    zero = scale[rows] == 0 if scale is not None else np.zeros(m, bool)
    ids = rows[~zero]
    k_eff = min(k, ids.size - 1)
    if k_eff > 0:
        if backend == "exact":
            li, ld = _exact_search(_prepared(x, ids, scale), k_eff)
            ld = ld**2 * 0.5 if scale is not None else ld
        else:
            kc = min(_CANDIDATES_PER_NEIGHBOR * k_eff, ids.size - 1)
            cand, order = _ivf_candidates(x, ids, kc, scale=scale, chunk_rows=chunk_rows,
                                          params=params, **ivf)  # fmt: skip
            li, ld = _rerank(x, ids, cand, order, k_eff, scale)
        idx[~zero, :k_eff] = np.where(li >= 0, ids[np.maximum(li, 0)], -1)
        dist[~zero, :k_eff] = ld
    if zero.any() and m > 1:
        idx, dist = _merge_zero_rows(idx, dist, rows, zero)
    return idx, dist


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
    n_probe: int = 6,
    chunk_rows: int = 1024,
    seed: int = 0,
    n_threads: int | None = None,
) -> Neighbors:
    """The ``k`` nearest other rows of every row of ``x`` (self excluded).

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, D)`` features (any real dtype; a memory map is fine: rows are
        read in blocks). Computation is float32 (float64 accumulation for
        ``exact``).
    k : int
        Neighbours per row; rows with fewer than ``k`` possible neighbours are
        padded with index ``-1`` and distance ``inf``.
    metric : {'cosine', 'euclidean'}
        Cosine distance ``1 - cos`` (all-zero rows are at distance 1 from
        everything) or euclidean distance.
    backend : {'auto', 'exact', 'ivf'}
        ``auto``: ``exact`` for at most ``exact_limit`` rows (per group), else ``ivf``.
    groups : numpy.ndarray, optional
        ``(N,)`` labels; neighbours are searched only among rows of the same
        group (e.g. rows embedded by the same fold model).
    exact_limit : int, optional
        Largest number of rows searched by brute force under ``auto``; default:
        as many as keep ``N**2 * D`` within :data:`EXACT_MAX_WORK` (about 10,000
        rows of 512-d features, 28,000 of 64-d).
    reduce_dim : int
        ``ivf``: principal components the inverted file works on when ``D`` is
        larger (candidates only; returned distances are exact).
    n_lists, n_probe : int
        ``ivf``: k-means cells (default ``2 sqrt(N)``, at most 4096) and the
        cells probed per row.
    chunk_rows : int
        Rows converted to float32 at once (``ivf`` adds and searches ``8 *
        chunk_rows`` rows per call).
    seed : int
        Seed of the ``ivf`` training sample and k-means.
    n_threads : int, optional
        ``ivf``: faiss (OpenMP) threads; default: the CPUs this process may
        use (affinity and cgroup quota), at most OpenMP's default
        (``OMP_NUM_THREADS``).

    Returns
    -------
    Neighbors
        ``indices`` and ``distances`` of shape ``(N, k)``, nearest first.

    Raises
    ------
    ValueError
        For a bad array, metric, backend, ``k`` or ``groups``.
    ImportError
        When the package a backend needs is not installed.
    """
    if metric not in get_args(Metric):
        raise ValueError(MSG_UNKNOWN_METRIC.format(metric=metric, valid=list(get_args(Metric))))
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    k = int(k)
    x = _check_features(x)
    n, d = x.shape
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(MSG_BAD_GROUPS.format(n=n, shape=groups.shape))
        labels, sizes = np.unique(groups, return_counts=True)
    else:
        labels, sizes = np.zeros(1), np.array([n])
    # check the backend name and its package before any work
    resolved = {resolve_backend(backend, int(s), exact_limit=exact_limit, d=d) for s in sizes}
    _check_finite(x, chunk_rows * 16)
    scale = _inverse_norms(x, chunk_rows * 16) if metric == "cosine" else None
    params: dict[str, Any] = {"k": k, "metric": metric}
    idx = np.full((n, k), -1, np.int64)
    dist = np.full((n, k), np.inf, np.float32)
    for g, size in zip(labels, sizes):
        rows = np.arange(n) if groups is None else np.flatnonzero(groups == g)
        idx[rows], dist[rows] = _knn_rows(
            x, rows, k, backend=resolve_backend(backend, int(size), exact_limit=exact_limit, d=d),
            scale=scale, chunk_rows=chunk_rows, params=params, reduce_dim=reduce_dim,
            n_lists=n_lists, n_probe=n_probe, seed=seed, n_threads=n_threads,
        )  # fmt: skip
    if groups is not None:
        params["n_groups"] = int(labels.size)
    used = "exact" if resolved == {"exact"} else "ivf"
    params["backend"] = used
    return Neighbors(idx, dist, metric, used, params)


# --------------------------------------------------------------------------- pixels
def _bin_starts(size: int, out: int) -> np.ndarray:
    """First index of each of ``out`` near-equal bins of ``range(size)``."""
    return np.unique((np.arange(out) * size) // out)


def rows_per_chunk(images: np.ndarray, *, values: int = 1 << 24, most: int = 4096) -> int:
    """Rows of an image cache holding about ``values`` pixel values (1 to ``most``)."""
    per_row = int(np.prod(images.shape[1:])) or 1
    return int(max(1, min(most, values // per_row)))


def pixel_embedding(
    images: np.ndarray, *, size: int = 16, chunk_rows: int | None = None
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

    Returns
    -------
    numpy.ndarray
        ``(N, C * size**2)`` float32.

    Raises
    ------
    ValueError
        When ``images`` is not 3-D or 4-D.
    """
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, S, S); got {images.shape}")
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
    return out
