"""Convolutions on tiny feature maps as plain matrix products (CPU, bf16).

At small inputs the last stages of a CNN see tiny maps: a ResNet-18 on a
64 px image runs its 512-channel 3 x 3 convolutions on 2 x 2 maps (4 x 4
with the stem max-pool dropped). oneDNN's bf16 convolution is slow there:
the work is dominated by reordering a large weight into its blocked layout
for a handful of output pixels. Written as im2col followed by one matrix
product, the same convolution is a weight-shaped GEMM that the CPU's AMX /
AVX512-BF16 units run at full speed. The im2col is one strided copy of the
zero-padded channels-last input (:class:`_Im2colNHWC`, faster than
``F.unfold`` / ``col2im`` on such maps), and its backward adds the
``kh * kw`` shifted gradient windows back in float32; the weight is kept in
the channels-last layout, so its ``(C_out, kh * kw * C_in)`` matrix is a view.
``bench/bench_train_speed.py`` measures the gain (see ``bench/README.md``).

:func:`use_matmul_convs` switches the qualifying ``nn.Conv2d`` modules of a
model to :class:`MatmulConv2d` (:func:`training.device.place_model` does so on
a CPU in bf16). The switch changes no parameter value or buffer (state dicts
and checkpoints are interchangeable with the unmodified model) and computes
the same function up to floating-point rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_MATMUL_SIDE", "MatmulConv2d", "use_matmul_convs"]

#: Largest feature-map side (input of the convolution) computed as a matrix product.
#: Up to this side the matrix product beats oneDNN's bf16 convolution in forward +
#: backward; on larger maps the convolution kernel is faster, so they stay convolutions.
MAX_MATMUL_SIDE = 4


class _Im2colNHWC(torch.autograd.Function):
    """im2col of a ``(B, C, H, W)`` map as rows ``(B*H'*W', kh*kw*C)``, taps before channels.

    Forward: one strided copy of the zero-padded channels-last input. Backward:
    the gradient windows of the ``kh * kw`` taps are added back into the padded
    map (in float32 for half-precision gradients), then the padding is cut off;
    no ``col2im`` call, which was the slow part of ``F.unfold``'s backward on
    tiny maps.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
        padding: tuple[int, int], dilation: tuple[int, int], out_size: tuple[int, int],
    ) -> torch.Tensor:
        b, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel, stride, padding, dilation, out_size
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))  # (B, H+2ph, W+2pw, C), contiguous
        s_b, s_h, s_w, s_c = xp.stride()
        windows = xp.as_strided((b, oh, ow, kh, kw, c), (s_b, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))
        ctx.geometry = (b, c, h, w, kernel, stride, padding, dilation, out_size)
        return windows.reshape(b * oh * ow, kh * kw * c)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        b, c, h, w, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = ctx.geometry
        g = grad.reshape(b, oh, ow, kh, kw, c)
        acc = torch.promote_types(grad.dtype, torch.float32)
        gx = grad.new_zeros((b, h + 2 * ph, w + 2 * pw, c), dtype=acc)
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = ky * dh, kx * dw
                gx[:, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw] += g[:, :, :, ky, kx]
        gx = gx[:, ph : ph + h, pw : pw + w].to(grad.dtype)
        return gx.permute(0, 3, 1, 2), None, None, None, None, None


class MatmulConv2d(nn.Conv2d):
    """``nn.Conv2d`` computed as im2col + one matrix product.

    Same parameters, state dict and result (up to rounding) as
    :class:`torch.nn.Conv2d`; only ``groups=1``, integer padding and
    ``padding_mode='zeros'`` are supported (see :func:`use_matmul_convs`).
    The weight is best kept channels-last (``use_matmul_convs`` does so): its
    ``(C_out, kh*kw*C_in)`` matrix is then a view, not a copy per call.
    The ``(B*H'*W', C_out)`` product is returned as a ``(B, C_out, H', W')``
    view in the channels-last memory format, without a copy.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x``.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C_in, H, W)``, any memory format.

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
        rows = _Im2colNHWC.apply(x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow))
        # One 2-D GEMM over all B * H' * W' positions: a batched (3-D @ 2-D) product
        # takes a much slower per-sample path in bf16.
        weight = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)  # taps, then C_in
        y = F.linear(rows, weight, self.bias)  # (B*H'*W', C_out)
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
        # Channels-last weight: its (C_out, kh*kw*C_in) matrix is a view, not a copy per call.
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    return switched

