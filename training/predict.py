"""Scoring cached rows with a model: logits, embeddings and probabilities."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.dataset import ImageCache, Normalization, iterate_batches, prepare_batch
from training.device import DeviceSetup
from training.models import embed_and_logits

__all__ = ["predict_rows", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(M, K)``.

    Returns
    -------
    numpy.ndarray
        ``(M, K)`` float32 probabilities, each row summing to 1.
    """
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@torch.no_grad()
def predict_rows(
    model: nn.Module,
    cache: ImageCache,
    rows: np.ndarray,
    *,
    setup: DeviceSetup,
    norm: Normalization,
    image_size: int | None,
    batch_size: int,
    variant: str | None = None,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of ``rows`` (eval mode, no augmentation).

    Parameters
    ----------
    model : torch.nn.Module
        A timm model (switched to eval mode).
    cache : ImageCache
        Images of the run.
    rows : numpy.ndarray
        ``(M,)`` row indices (may be empty).
    setup : DeviceSetup
        Device, autocast precision and memory format.
    norm : Normalization
        Per-channel input normalisation.
    image_size : int or None
        Model input side; ``None`` uses the cache side.
    batch_size : int
        Rows per forward pass.
    variant : str, optional
        Masked variant applied to the images (:mod:`training.masking`).
    num_workers : int
        Batch prefetch threads.

    Returns
    -------
    logits : numpy.ndarray
        ``(M, K)`` float32.
    embeddings : numpy.ndarray
        ``(M, D)`` float32.
    """
    model.eval()
    logits: list[torch.Tensor] = []
    embs: list[torch.Tensor] = []
    for _, raw in iterate_batches(cache, rows, batch_size, num_workers=num_workers):
        x = prepare_batch(raw, setup=setup, norm=norm, image_size=image_size,
                          is_uint8=cache.is_uint8, variant=variant)
        with setup.autocast():
            emb, out = embed_and_logits(model, x)
        logits.append(out.float().cpu())
        embs.append(emb.float().cpu())
    if not logits:  # no rows: one dummy image gives the output widths
        c, s = cache.channels, image_size or cache.size
        dummy = torch.zeros(1, c, s, s, device=setup.device).contiguous(memory_format=setup.memory_format)
        with setup.autocast():
            emb, out = embed_and_logits(model, dummy)
        return (np.zeros((0, out.shape[1]), np.float32), np.zeros((0, emb.shape[1]), np.float32))
    return torch.cat(logits).numpy(), torch.cat(embs).numpy()
