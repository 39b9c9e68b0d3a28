"""Fast batches from the memory-mapped image cache.

The cache ``images.npy`` is ``(N, C, S, S)`` uint8 (or float16 in ``[0, 1]``).
Batches are read by fancy-indexing the memory map with sorted row indices
(sequential reads), turned into a uint8 tensor without a copy, moved to the
device, and only there converted to float, resized, augmented, masked and
normalised (:func:`prepare_batch`). A cache that fits in ``preload_bytes`` is
read into memory once. ``num_workers > 0`` prefetches the next batches in
background threads so reading overlaps compute.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from audit.rundir import RunDir
from training.augment import BatchAugmenter, resize_batch
from training.device import DeviceSetup
from training.masking import apply_mask

__all__ = ["ImageCache", "Normalization", "iterate_batches", "prepare_batch"]

#: Caches up to this size are read into memory once (bytes).
PRELOAD_BYTES = 2 * 1024**3


class ImageCache:
    """Row-indexed access to ``images.npy`` of a run directory.

    Parameters
    ----------
    run : RunDir
        The run directory (``images.npy`` is validated against the manifest).
    preload_bytes : int
        Read the whole cache into memory when it is at most this large.
    """

    def __init__(self, run: RunDir, *, preload_bytes: int = PRELOAD_BYTES) -> None:
        arr = run.read_array("images", mmap=True)
        if arr.dtype not in (np.uint8, np.float16, np.float32):
            raise TypeError(
                f"images.npy of {run.path} must be uint8 or float16; got {arr.dtype} "
                "(re-run `medaudit ingest`)"
            )
        if arr.shape[-1] != arr.shape[-2]:
            raise ValueError(f"images.npy of {run.path} must hold square images; got {arr.shape}")
        self.array: np.ndarray = np.asarray(arr) if arr.nbytes <= preload_bytes else arr
        self.is_uint8 = arr.dtype == np.uint8

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, C, S, S)``."""
        return tuple(self.array.shape)

    @property
    def channels(self) -> int:
        """Number of image channels C."""
        return int(self.array.shape[1])

    @property
    def size(self) -> int:
        """Cached image side S."""
        return int(self.array.shape[-1])

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """Images of ``rows`` in the given order.

        Parameters
        ----------
        rows : numpy.ndarray
            ``(B,)`` integer row indices.

        Returns
        -------
        torch.Tensor
            ``(B, C, S, S)`` uint8 (or float16) CPU tensor.
        """
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        data = self.array[rows[order]]
        if not np.all(order[:-1] < order[1:]):  # restore the requested order
            inv = np.empty_like(order)
            inv[order] = np.arange(order.size)
            data = data[inv]
        return torch.from_numpy(np.ascontiguousarray(data))

    def channel_stats(self, rows: np.ndarray, *, max_rows: int = 4096, seed: int = 0) -> Normalization:
        """Per-channel mean / std (in ``[0, 1]`` units) over a sample of ``rows``.

        Only the training rows of a fold should be passed, so the fold's
        out-of-fold rows do not shape their own normalisation.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size > max_rows:
            rows = np.random.default_rng(seed).choice(rows, max_rows, replace=False)
        x = _to_unit_float(self.read(rows), self.is_uint8).double()
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return Normalization(tuple(float(m) for m in mean), tuple(float(s) for s in std))


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std used to standardise inputs (``[0, 1]`` units)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form."""
        return {"mean": list(self.mean), "std": list(self.std)}


def _to_unit_float(x: torch.Tensor, is_uint8: bool) -> torch.Tensor:
    x = x.float()
    return x.div_(255.0) if is_uint8 else x


def prepare_batch(
    x: torch.Tensor,
    *,
    setup: DeviceSetup,
    norm: Normalization,
    image_size: int | None,
    is_uint8: bool = True,
    augmenter: BatchAugmenter | None = None,
    generator: torch.Generator | None = None,
    variant: str | None = None,
) -> torch.Tensor:
    """Turn a raw cache batch into a model input on the device.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, S, S)`` uint8 (or float16) batch from :meth:`ImageCache.read`.
    setup : DeviceSetup
        Device and memory format.
    norm : Normalization
        Per-channel standardisation.
    image_size : int or None
        Model input side; ``None`` keeps ``S``.
    is_uint8 : bool
        Whether ``x`` holds 0..255 values.
    augmenter : BatchAugmenter, optional
        Training augmentation (needs ``generator``).
    generator : torch.Generator, optional
        Seeded CPU generator for the augmentation.
    variant : str, optional
        Masked re-scoring variant applied before normalisation.

    Returns
    -------
    torch.Tensor
        ``(B, C, image_size, image_size)`` float32 on ``setup.device``.
    """
    x = x.to(setup.device, non_blocking=True)
    x = _to_unit_float(x, is_uint8)
    x = resize_batch(x, image_size)
    if augmenter is not None:
        if generator is None:
            raise ValueError("prepare_batch: an augmenter needs a seeded torch.Generator")
        x = augmenter(x, generator)
    if variant is not None:
        x = apply_mask(x, variant)
    mean = torch.tensor(norm.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=setup.memory_format)


def iterate_batches(
    cache: ImageCache,
    rows: np.ndarray,
    batch_size: int,
    *,
    num_workers: int = 0,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(batch_rows, images)`` for consecutive chunks of ``rows``.

    Parameters
    ----------
    cache : ImageCache
    rows : numpy.ndarray
        ``(M,)`` row indices in the order to visit them.
    batch_size : int
    num_workers : int
        Batches read ahead in background threads (0 = read in the caller).

    Yields
    ------
    batch_rows : numpy.ndarray
        ``(B,)`` row indices.
    images : torch.Tensor
        ``(B, C, S, S)`` raw cache values.
    """
    chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    if num_workers <= 0:
        for chunk in chunks:
            yield chunk, cache.read(chunk)
        return
    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="medaudit-io") as pool:
        pending: list[Future[torch.Tensor]] = []
        ahead = num_workers + 1
        for chunk in chunks[:ahead]:
            pending.append(pool.submit(cache.read, chunk))
        for i, chunk in enumerate(chunks):
            images = pending[i].result()
            if i + ahead < len(chunks):
                pending.append(pool.submit(cache.read, chunks[i + ahead]))
            yield chunk, images
