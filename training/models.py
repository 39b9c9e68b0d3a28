"""Models: any timm architecture, built offline, optionally from a local weights file.

Weights are never downloaded: :func:`create_model` always calls
``timm.create_model(..., pretrained=False)`` and loads pretrained weights only
from a file the user names.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import torch
from torch import nn

from training.config import StemPool, TrainConfig
from training.dataset import ImageCache
from training.device import DeviceSetup, place_model
from training.messages import NO_DOWNLOAD_MESSAGE, check_not_a_download

__all__ = [
    "SMALL_INPUT_SIDE",
    "build_model",
    "create_model",
    "drop_stem_pool",
    "embed_and_logits",
    "join_model_states",
    "load_weights",
    "read_weights_file",
    "resolve_stem_pool",
    "split_model_states",
]

_log = logging.getLogger(__name__)

_CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")
_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "backbone.")

#: Largest input side for which ``stem_pool='auto'`` drops a stem max-pool.
SMALL_INPUT_SIDE = 64


def check_model_name(name: str) -> None:
    """Raise when ``name`` is not a timm architecture, suggesting the closest names.

    Raises
    ------
    ValueError
        E.g. ``unknown timm architecture 'resnet10tt'; did you mean 'resnet10t'?``.
    """
    import difflib

    import timm

    if timm.is_model(name):
        return
    names = timm.list_models()
    close = difflib.get_close_matches(name.lower(), names, n=5, cutoff=0.75)
    if not close:
        close = [n for n in names if name.lower().split("_")[0] in n][:5]
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else \
        "no similar name"
    raise ValueError(f"unknown timm architecture {name!r}; {hint} (timm.list_models() lists "
                     f"all {len(names)})")


def create_model(
    name: str,
    num_classes: int,
    in_chans: int,
    *,
    pretrained_weights: str | Path | None = None,
    pretrained: bool = False,
    stem_pool: str = "keep",
    input_side: int | None = None,
) -> nn.Module:
    """Build a timm model with random weights or weights from a local file.

    Parameters
    ----------
    name : str
        timm architecture name, e.g. ``"resnet18"`` or ``"test_resnet"``.
    num_classes : int
        Output classes (>= 2).
    in_chans : int
        Input channels of the image cache (1 for grayscale, 3 for RGB).
    pretrained_weights : str or Path, optional
        Local weights file: a plain state dict, or a timm / Lightning checkpoint
        holding one under ``'state_dict'``, ``'model'`` (and similar) keys. A
        classifier head of another size is dropped (the new head stays random)
        and a first convolution with another channel count is adapted with
        :func:`timm.models.adapt_input_conv`.
    pretrained : bool
        ``True`` only documents that pretrained weights are wanted: it requires
        ``pretrained_weights``, since nothing is ever downloaded.
    stem_pool : {'keep', 'drop', 'auto'}
        What to do with the stem max-pool (see :func:`resolve_stem_pool`).
    input_side : int, optional
        Side of the model input in pixels; needed by ``stem_pool='auto'``.

    Returns
    -------
    torch.nn.Module
        A timm model with ``forward_features`` / ``forward_head``.

    Raises
    ------
    ValueError
        Unknown architecture, bad class/channel counts, or pretrained weights
        requested without a local file (:data:`NO_DOWNLOAD_MESSAGE`).
    FileNotFoundError
        When ``pretrained_weights`` does not exist.
    """
    import timm

    if not isinstance(name, str):
        raise TypeError(f"model name must be a str; got {type(name).__name__}")
    if pretrained and pretrained_weights is None:
        raise ValueError(NO_DOWNLOAD_MESSAGE.format(what="pretrained=True"))
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be an int >= 1; got {in_chans!r}")
    check_model_name(name)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    pretrained_file = pretrained_weights is not None
    if resolve_stem_pool(model, stem_pool, input_side, pretrained=pretrained_file) == "drop":
        drop_stem_pool(model)
    if pretrained_weights is not None:
        load_weights(model, pretrained_weights)
    return model



def build_model(config: TrainConfig, n_classes: int, cache: ImageCache, setup: DeviceSetup) -> nn.Module:
    """The configured timm model for ``cache``'s images, placed on ``setup``'s device.

    Parameters
    ----------
    config : TrainConfig
        Architecture, pretrained weights, stem-pool policy and input side.
    n_classes : int
        Output width ``K``.
    cache : ImageCache
        Gives the input channels and, without ``config.image_size``, the side.
    setup : DeviceSetup
        Device, precision and memory format (see :func:`training.device.place_model`).

    Returns
    -------
    torch.nn.Module
        Model taking ``(B, C, S, S)`` inputs, in training mode.
    """
    side = config.image_size or cache.size
    model = create_model(config.model, n_classes, cache.channels,
                         pretrained_weights=config.pretrained_weights,
                         stem_pool=config.stem_pool, input_side=side)
    return place_model(model, setup, (cache.channels, side, side))

def _stem_pool_module(model: nn.Module) -> nn.Module | None:
    pool = getattr(model, "maxpool", None)
    return pool if isinstance(pool, nn.MaxPool2d) else None


def resolve_stem_pool(
    model: nn.Module, policy: str, input_side: int | None, *, pretrained: bool = False
) -> str:
    """Decide whether the stem max-pool of ``model`` is kept or dropped.

    A ResNet-style stem divides the input side by 4 (stride-2 convolution, then
    a stride-2 max-pool), so a 64 px image reaches the last stage as a 2 x 2
    map. Dropping the max-pool (the usual adaptation for small images, as in
    the CIFAR ResNets of He et al., CVPR 2016) keeps twice the resolution in
    every stage, at the price of several times the compute per step; it
    changes no parameter, so weights files load either way. Its cost and
    effect on accuracy are measured in ``bench/`` (see ``bench/README.md``).

    Parameters
    ----------
    model : torch.nn.Module
        A timm model.
    policy : {'keep', 'drop', 'auto'}
        ``auto`` drops the pool when the model has one, ``input_side`` is at
        most :data:`SMALL_INPUT_SIDE` and the model is trained from scratch;
        ``drop`` requires a stem max-pool.
    input_side : int, optional
        Side of the model input in pixels (``auto`` keeps the pool without it).
    pretrained : bool
        Whether pretrained weights will be loaded. ``auto`` then keeps the pool:
        the pretrained filters were learned with it, and a frozen backbone
        (``mode='linear-probe'``) cannot adapt to the doubled resolution.

    Returns
    -------
    str
        ``'keep'`` or ``'drop'``.

    Raises
    ------
    ValueError
        Unknown policy, or ``'drop'`` for a model without a stem max-pool.
    """
    if policy not in get_args(StemPool):
        raise ValueError(f"stem_pool must be one of {list(get_args(StemPool))}; got {policy!r}")
    has_pool = _stem_pool_module(model) is not None
    if policy == "drop" and not has_pool:
        raise ValueError(
            f"stem_pool='drop' but {type(model).__name__} has no stem max-pool (a 'maxpool' "
            "nn.MaxPool2d attribute, as in timm ResNets); use stem_pool='keep' or 'auto'"
        )
    if policy == "auto":
        small = input_side is not None and input_side <= SMALL_INPUT_SIDE
        return "drop" if has_pool and small and not pretrained else "keep"
    return policy


def drop_stem_pool(model: nn.Module) -> nn.Module:
    """Replace the stem max-pool of a timm ResNet-style ``model`` by an identity.

    Returns
    -------
    torch.nn.Module
        ``model`` itself, changed in place (its feature map sides double).
    """
    if _stem_pool_module(model) is None:
        raise ValueError(f"{type(model).__name__} has no stem max-pool to drop")
    model.maxpool = nn.Identity()  # type: ignore[assignment]
    return model


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a local file (``torch.load(..., weights_only=True)``).

    Parameters
    ----------
    path : str or Path
        A ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` file (or ``.safetensors`` when
        the ``safetensors`` package is installed).

    Returns
    -------
    dict of str to torch.Tensor
        Keys cleaned of wrapper prefixes (``module.``, ``_orig_mod.``, ``model.``).

    Raises
    ------
    ValueError
        When the value names a hub or URL, or the file holds no state dict.
    FileNotFoundError
        When the file does not exist.
    """
    check_not_a_download(str(path))
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"pretrained weights file {str(p)!r} does not exist; pass the path of a state "
            "dict or timm checkpoint saved on this machine (nothing is downloaded)"
        )
    if not p.is_file():
        raise ValueError(
            f"pretrained weights file {str(p)!r} is not a regular file (a folder, device or "
            "pipe); pass the path of a state dict or timm checkpoint file"
        )
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ValueError(
                f"{p} is a safetensors file; install the 'safetensors' package to read it"
            ) from err
        obj: Any = load_file(str(p), device="cpu")
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            # weights_only refused an object that is not tensors and plain containers:
            # the file would run code when loaded. Never suggest weights_only=False.
            found = re.search(r"GLOBAL ([\w.]+)", str(err))
            what = f" (it refers to {found.group(1)})" if found else ""
            raise ValueError(
                f"weights file {str(p)!r} contains Python objects that would run code when "
                f"loaded{what}, so it was not loaded; ask for a plain state dict saved with "
                "torch.save(model.state_dict(), path)"
            ) from None
        except Exception as err:
            raise ValueError(
                f"cannot read weights file {str(p)!r} as a PyTorch checkpoint "
                f"({type(err).__name__}: {' '.join(str(err).split())[:160]}); save a plain "
                "state dict: torch.save(model.state_dict(), path)"
            ) from None
    models = split_model_states(_find_state_dict(obj, p))
    if len(models) > 1:
        _log.info("%s holds %d models (a medaudit fold ensemble); using the first", p, len(models))
    return _strip_prefixes(models[0])


_MODEL_KEY = re.compile(r"^model(\d+)\.(.+)$")


def join_model_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One state dict for the models a fold keeps (``train/fold_<k>.pt``).

    Parameters
    ----------
    states : list of dict
        State dicts of the kept models, in order (at least one).

    Returns
    -------
    dict of str to torch.Tensor
        The single state dict unchanged, or the keys of model ``i`` prefixed
        ``model<i>.``; :func:`split_model_states` inverts it.
    """
    if not states:
        raise ValueError("join_model_states needs at least one state dict")
    if len(states) == 1:
        return dict(states[0])
    return {f"model{i}.{key}": v for i, st in enumerate(states) for key, v in st.items()}


def split_model_states(state: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The state dicts of the models in ``state`` (inverse of :func:`join_model_states`).

    Returns
    -------
    list of dict
        ``[state]`` for a plain state dict, else one dict per ``model<i>.``
        prefix, in index order.
    """
    groups: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = _MODEL_KEY.match(key)
        if m is None:
            return [dict(state)]
        groups.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return [groups[i] for i in sorted(groups)] or [dict(state)]


def _find_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(
                isinstance(v, torch.Tensor) for v in inner.values()
            ):
                return dict(inner)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ValueError(
        f"weights file {str(path)!r} holds no state dict (a mapping of parameter names to "
        f"tensors, possibly under one of {list(_CHECKPOINT_KEYS)}); got {type(obj).__name__}"
    )


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and state:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def load_weights(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load a local weights file into ``model``, adapting head and first conv.

    Tensors whose shape differs from the model's are handled this way: the
    first convolution (timm ``pretrained_cfg['first_conv']``) is adapted to the
    model's input channels; any other mismatch (typically the classifier head of
    another class count) is dropped and keeps its fresh initialisation. Missing
    and unexpected keys are logged.

    Parameters
    ----------
    model : torch.nn.Module
        A timm model.
    path : str or Path
        Local weights file (see :func:`read_weights_file`).

    Returns
    -------
    missing, unexpected : list of str
        Parameter names the file did not provide / provided but the model lacks.

    Raises
    ------
    ValueError
        When no tensor of the file matches the model (wrong architecture).
    """
    state = read_weights_file(path)
    own = model.state_dict()
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first_conv = cfg.get("first_conv")
    first_convs = [first_conv] if isinstance(first_conv, str) else list(first_conv or [])
    dropped: list[str] = []
    for key in list(state):
        if key not in own or state[key].shape == own[key].shape:
            continue
        src, dst = state[key], own[key]
        stem = key.rsplit(".", 1)[0]
        if stem in first_convs and key.endswith("weight") and src.ndim == 4 and dst.ndim == 4:
            from timm.models import adapt_input_conv

            try:
                adapted = adapt_input_conv(dst.shape[1], src, base_chans=src.shape[1])
            except (NotImplementedError, ValueError, AssertionError):
                adapted = None
            if adapted is not None and adapted.shape == dst.shape:
                _log.info(
                    "adapted first convolution %r from %d to %d input channels",
                    key, src.shape[1], dst.shape[1],
                )
                state[key] = adapted
                continue
        dropped.append(f"{key} {tuple(src.shape)} -> {tuple(dst.shape)}")
        del state[key]
    if dropped:
        _log.info(
            "weights from %s: %d tensor(s) of another shape left at their fresh "
            "initialisation (e.g. a classifier head of another size): %s",
            path, len(dropped), "; ".join(dropped),
        )
    matched = [k for k in state if k in own]
    if not matched:
        raise ValueError(
            f"no tensor of weights file {str(path)!r} matches the model "
            f"{type(model).__name__}: is it a checkpoint of another architecture? "
            f"File keys start {list(state)[:5]}, model keys start {list(own)[:5]}"
        )
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing:
        _log.info("weights from %s: %d missing key(s) kept at initialisation: %s",
                  path, len(missing), ", ".join(missing[:20]))
    if unexpected:
        _log.warning("weights from %s: %d unexpected key(s) ignored: %s",
                     path, len(unexpected), ", ".join(unexpected[:20]))
    _log.info("loaded %d/%d tensors from %s", len(matched), len(own), path)
    return missing, unexpected


def embed_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features and logits of a timm model in one forward pass.

    Parameters
    ----------
    model : torch.nn.Module
        A timm model (``forward_features`` + ``forward_head``).
    x : torch.Tensor
        ``(B, C, H, W)`` normalised input.

    Returns
    -------
    embeddings : torch.Tensor
        ``(B, D)`` pre-logits features (``forward_head(..., pre_logits=True)``).
    logits : torch.Tensor
        ``(B, K)``.
    """
    feats = model.forward_features(x)  # type: ignore[operator]
    emb = model.forward_head(feats, pre_logits=True)  # type: ignore[operator]
    logits = model.forward_head(feats)  # type: ignore[operator]
    if emb.ndim > 2:
        emb = emb.flatten(1)
    return emb, logits
