"""Device and numeric-precision selection.

``auto`` resolves as follows:

=========================  ==================================================
hardware                   precision used
=========================  ==================================================
CUDA GPU with bf16         bf16 autocast (no loss scaling needed)
CUDA GPU without bf16      fp16 autocast + :class:`torch.amp.GradScaler`
CPU with native bf16       bf16 autocast + channels-last memory format
(AVX512-BF16 or AMX-BF16)
any other CPU              fp32
=========================  ==================================================

On a CPU without native bf16, bf16 still works when asked for explicitly but is
emulated and usually slower than fp32, so ``auto`` never picks it.

:func:`place_model` puts a model on the chosen device and memory format; in
bf16 on a CPU it also runs the convolutions on feature maps of side <= 4 as
matrix products (:mod:`training.small_conv`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from training.small_conv import MAX_MATMUL_SIDE, use_matmul_convs

__all__ = ["DeviceSetup", "cpu_has_native_bf16", "place_model", "resolve_device_setup"]

_log = logging.getLogger(__name__)

ResolvedPrecision = Literal["fp32", "bf16", "fp16"]

_SMALL_MAPS = f"; convolutions on maps <= {MAX_MATMUL_SIDE} px as matrix products"
_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU executes bf16 natively (AVX512-BF16 or AMX-BF16).

    Asks PyTorch's own CPU capability probes first (``torch.cpu``) and falls back
    to the ``/proc/cpuinfo`` flags ``avx512_bf16`` / ``amx_bf16`` on Linux.

    Returns
    -------
    bool
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        fn = getattr(torch.cpu, name, None)
        if fn is not None:
            try:
                if bool(fn()):
                    return True
            except Exception:  # pragma: no cover - private API changed
                _log.debug("torch.cpu.%s() failed; falling back to /proc/cpuinfo", name)
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    return bool({"avx512_bf16", "amx_bf16"} & flags)


@dataclass(frozen=True)
class DeviceSetup:
    """The resolved device and precision of a training run.

    Attributes
    ----------
    device : torch.device
        Where tensors and the model live.
    precision : {'fp32', 'bf16', 'fp16'}
        Autocast dtype, or ``fp32`` for none.
    channels_last : bool
        Whether model and inputs use the channels-last memory format.
    reason : str
        One line saying why this setup was chosen (logged and put in ``run.json``).
    """

    device: torch.device
    precision: ResolvedPrecision
    channels_last: bool
    reason: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, ``None`` in fp32."""
        return _DTYPES.get(self.precision)

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 on CUDA needs loss scaling; bf16 and fp32 do not."""
        return self.precision == "fp16" and self.device.type == "cuda"

    @property
    def memory_format(self) -> torch.memory_format:
        """``torch.channels_last`` or ``torch.contiguous_format``."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast context for forward passes (a no-op in fp32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description for ``run.json``."""
        return {
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "reason": self.reason,
        }


def resolve_device_setup(
    *,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto",
) -> DeviceSetup:
    """Pick the device, autocast precision and memory format.

    Parameters
    ----------
    device : {'auto', 'cpu', 'cuda'}
        ``auto`` uses CUDA when available.
    precision : {'auto', 'fp32', 'bf16', 'fp16'}
        ``auto`` follows the table in the module docstring; ``fp32`` forces
        full precision.

    Returns
    -------
    DeviceSetup

    Raises
    ------
    ValueError
        When ``cuda`` is asked for without a GPU, ``fp16`` on a CPU, or an
        unknown value.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda'; got {device!r}")
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16'; got {precision!r}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ValueError(
            "device 'cuda' was requested but torch sees no CUDA GPU "
            f"(torch {torch.__version__}); use device='cpu' or device='auto'"
        )
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu")

    if dev.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if precision == "auto":
            chosen: ResolvedPrecision = "bf16" if bf16_ok else "fp16"
            reason = f"CUDA GPU: {chosen} autocast" + ("" if bf16_ok else " with loss scaling")
        else:
            chosen = precision
            reason = f"CUDA GPU: {chosen} as requested"
        return DeviceSetup(dev, chosen, channels_last=chosen != "fp32", reason=reason)

    native = cpu_has_native_bf16()
    if precision == "auto":
        if native:
            return DeviceSetup(
                dev, "bf16", True,
                "CPU with native bf16 (AVX512-BF16/AMX): bf16 autocast + channels-last" + _SMALL_MAPS,
            )
        return DeviceSetup(dev, "fp32", False, "CPU without native bf16: fp32")
    if precision == "fp16":
        raise ValueError(
            "precision 'fp16' needs a CUDA GPU; on a CPU use precision='bf16' "
            "(fast when the CPU has AVX512-BF16/AMX) or precision='fp32'"
        )
    if precision == "bf16":
        if not native:
            _log.warning(
                "bf16 on a CPU without native bf16 support is emulated and usually slower "
                "than fp32; consider precision='fp32'"
            )
        return DeviceSetup(dev, "bf16", True,
                           "CPU: bf16 autocast + channels-last as requested" + _SMALL_MAPS)
    return DeviceSetup(dev, "fp32", False, "CPU: fp32 as requested")


def place_model(model: nn.Module, setup: DeviceSetup, input_shape: tuple[int, int, int]) -> nn.Module:
    """Move ``model`` to ``setup``'s device and memory format, with CPU-bf16 kernels.

    Parameters
    ----------
    model : torch.nn.Module
        Changed in place.
    setup : DeviceSetup
        Device, precision and memory format of the run.
    input_shape : tuple of int
        ``(C, H, W)`` of one model input.

    Returns
    -------
    torch.nn.Module
        ``model``, on the device; on a CPU in bf16 its convolutions on maps of
        side <= :data:`training.small_conv.MAX_MATMUL_SIDE` are
        :class:`training.small_conv.MatmulConv2d`.
    """
    model = model.to(setup.device, memory_format=setup.memory_format)
    if setup.device.type == "cpu" and setup.precision == "bf16":
        switched = use_matmul_convs(model, input_shape)
        if switched:
            _log.debug("%d convolutions on maps of side <= %d run as matrix products (CPU bf16)",
                       len(switched), MAX_MATMUL_SIDE)
    return model
