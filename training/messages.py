"""User-facing messages of the training package, kept as constants (tests match them)."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["NON_FINITE_OUTPUTS", "NO_DOWNLOAD_MESSAGE", "check_not_a_download"]

#: Raised whenever pretrained weights are asked for without a local file.
NO_DOWNLOAD_MESSAGE = (
    "pretrained weights were requested ({what}) but no local weights file was given; "
    "medaudit never downloads model weights (machines in hospitals are often offline). "
    "Set TrainConfig.pretrained_weights to a state dict or a timm checkpoint saved on "
    "this machine"
)

#: Raised when a fold's model scores rows with NaN or infinite outputs.
NON_FINITE_OUTPUTS = (
    "fold {fold}: the model produced non-finite outputs (training diverged); lower "
    "TrainConfig.lr, or use precision='fp32'"
)

_HUB_WORDS = ("imagenet", "pretrained", "default", "true", "yes", "1")
_HUB_PREFIXES = ("hf-hub:", "hf_hub:", "timm/")
#: A URL scheme (2+ letters, so ``C:/...`` stays a path) followed by ``/``: matches
#: ``https://host/w.pt`` and also ``https:/host/w.pt``, what ``Path`` makes of it.
_URL = re.compile(r"^[a-z][a-z0-9+.\-]+:/")


def check_not_a_download(value: str) -> None:
    """Refuse a weights value that names a hub, a URL or a tag instead of a file.

    Parameters
    ----------
    value : str
        What the user passed as pretrained weights.

    Raises
    ------
    ValueError
        With :data:`NO_DOWNLOAD_MESSAGE` when ``value`` is a hub tag (``"imagenet"``),
        a hub name (``"timm/..."``, ``"hf-hub:..."``) or a URL.
    """
    text = value.strip().lower()
    if Path(value).is_file():
        return
    if text in _HUB_WORDS or text.startswith(_HUB_PREFIXES) or _URL.match(text):
        raise ValueError(NO_DOWNLOAD_MESSAGE.format(what=repr(value)))
