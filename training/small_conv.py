"""Convolutions on tiny feature maps as plain matrix products (CPU, bf16).

At small inputs the last stages of a CNN see tiny maps: a ResNet-18 on a
64 px image runs its 512-channel 3 x 3 convolutions on 2 x 2 maps (4 x 4
with the stem max-pool dropped). oneDNN's bf16 convolution is slow there:
the work is dominated by reordering a large weight into its blocked layout
for a handful of output pixels. Written as ``unfold`` (im2col) followed by
one matrix product, the same convolution is a weight-shaped GEMM that the
CPU's AMX / AVX512-BF16 units run at full speed. Measured on this project's
2-core CPU (one thread, batch 32, bf16, forward + backward, medians of 10):
512 channels on a 2 x 2 map 41 -> 14 ms, on a 4 x 4 map 50 -> 41 ms; on
8 x 8 and larger maps the convolution kernel stays faster (256 channels:
18 vs 70 ms), hence :data:`MAX_MATMUL_SIDE`.

:func:`place_model` moves a model to its device and memory format and, on a
CPU in bf16, switches the qualifying ``nn.Conv2d`` modules to
:class:`MatmulConv2d`. The switch changes no parameter or buffer (state dicts
and checkpoints are interchangeable with the unmodified model) and computes
the same function up to floating-point rounding.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # device.py names this module's limit in its run.json reason
    from training.device import DeviceSetup

__all__ = ["MAX_MATMUL_SIDE", "MatmulConv2d", "place_model", "use_matmul_convs"]

_log = logging.getLogger(__name__)

#: Largest feature-map side (input of the convolution) computed as a matrix product.
MAX_MATMUL_SIDE = 4


class MatmulConv2d(nn.Conv2d):
    """``nn.Conv2d`` computed as ``unfold`` + one matrix product.

    Same parameters, state dict and result (up to rounding) as
    :class:`torch.nn.Conv2d`; only ``groups=1``, integer padding and
    ``padding_mode='zeros'`` are supported (see :func:`use_matmul_convs`).
    The ``(B*H'*W', C_out)`` product is returned as a ``(B, C_out, H', W')``
    view in the channels-last memory format, without a copy.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x``.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C_in, H, W)``.

        Returns
        -------
        torch.Tensor
            ``(B, C_out, H', W')`` with the usual convolution output sides.
        """
        b, _, h, w = x.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        (ph, pw), (dh, dw) = self.padding, self.dilation  # type: ignore[misc]
        oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
        # One 2-D GEMM over all B * H' * W' positions: a batched (3-D @ 2-D) product of the
        # transposed columns takes a per-sample path that was ~100x slower in bf16 here.
        rows = cols.transpose(1, 2).reshape(b * oh * ow, -1)  # (B*H'*W', C_in*kh*kw)
        y = F.linear(rows, self.weight.flatten(1), self.bias)  # (B*H'*W', C_out)
        return y.view(b, oh, ow, self.out_channels).permute(0, 3, 1, 2)


def _qualifies(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d  # not timm's Conv2dSame or other subclasses
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.kernel_size != (1, 1)  # a 1 x 1 convolution is a GEMM already
    )


def use_matmul_convs(model: nn.Module, input_shape: tuple[int, int, int],
                     max_side: int = MAX_MATMUL_SIDE) -> list[str]:
    """Switch the convolutions of ``model`` that see tiny maps to :class:`MatmulConv2d`.

    The feature-map sides are measured with one forward pass of a zero image
    (eval mode, no gradient; batch-norm statistics are untouched).

    Parameters
    ----------
    model : torch.nn.Module
        Changed in place.
    input_shape : tuple of int
        ``(C, H, W)`` of one model input.
    max_side : int
        Largest input side (``max(H, W)`` of the convolution's input) switched.

    Returns
    -------
    list of str
        Names of the switched modules.
    """
    sides: dict[str, int] = {}
    hooks = [
        module.register_forward_hook(
            lambda _m, inputs, _o, name=name: sides.__setitem__(name, max(inputs[0].shape[-2:]))
        )
        for name, module in model.named_modules() if _qualifies(module)
    ]
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    switched = [name for name, side in sides.items() if side <= max_side]
    modules = dict(model.named_modules())
    for name in switched:
        conv = modules[name]
        conv.__class__ = MatmulConv2d
        # A flat (C_out, C_in*kh*kw) view of the weight needs the contiguous layout.
        conv.weight.data = conv.weight.data.contiguous()
    return switched


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
        side <= :data:`MAX_MATMUL_SIDE` are :class:`MatmulConv2d`.
    """
    model = model.to(setup.device, memory_format=setup.memory_format)
    if setup.device.type == "cpu" and setup.precision == "bf16":
        switched = use_matmul_convs(model, input_shape)
        if switched:
            _log.debug("%d convolutions on maps of side <= %d run as matrix products (CPU bf16)",
                       len(switched), MAX_MATMUL_SIDE)
    return model
