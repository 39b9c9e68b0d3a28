"""Convolutions on tiny maps as matrix products: same function, same parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from training.models import create_model
from training.small_conv import MAX_MATMUL_SIDE, MatmulConv2d, use_matmul_convs


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "bias", "side"),
    [(3, 1, 1, 1, False, 4), (3, 2, 1, 1, True, 5), (5, 1, 2, 2, True, 6), ((3, 1), 1, (1, 0), 1, False, 3)],
)
def test_matmul_conv_matches_conv2d_forward_and_backward(kernel, stride, padding, dilation, bias, side):
    torch.manual_seed(0)
    ref = nn.Conv2d(6, 10, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias).double()
    mm = copy.deepcopy(ref)
    mm.__class__ = MatmulConv2d
    x = torch.randn(3, 6, side, side + 1, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y_ref, y_mm = ref(x), mm(x2)
    assert y_mm.shape == y_ref.shape
    torch.testing.assert_close(y_mm, y_ref)
    g = torch.randn_like(y_ref)
    y_ref.backward(g)
    y_mm.backward(g)
    torch.testing.assert_close(x2.grad, x.grad)
    torch.testing.assert_close(mm.weight.grad, ref.weight.grad)
    if bias:
        torch.testing.assert_close(mm.bias.grad, ref.bias.grad)


def _sides(model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
    sides: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda _m, i, _o, n=n: sides.__setitem__(n, max(i[0].shape[-2:])))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros((1, *shape)))
    for h in hooks:
        h.remove()
    return sides


def test_only_convolutions_on_tiny_maps_are_switched():
    model = create_model("resnet18", 2, 1)
    sides = _sides(model, (1, 64, 64))
    model.train()
    switched = use_matmul_convs(model, (1, 64, 64))
    # ResNet-18 at 64 px: layer4 (2 x 2 maps, first conv reads 4 x 4) and the 3 x 3
    # convolutions reading layer3's 4 x 4 maps; 1 x 1 shortcuts stay convolutions.
    assert switched
    for name, module in model.named_modules():
        if name in switched:
            assert type(module) is MatmulConv2d
            assert sides[name] <= MAX_MATMUL_SIDE and module.kernel_size != (1, 1)
            assert module.weight.is_contiguous(memory_format=torch.channels_last)
        elif isinstance(module, nn.Conv2d):
            assert type(module) is nn.Conv2d
            assert sides[name] > MAX_MATMUL_SIDE or module.kernel_size == (1, 1)
    assert any(n.startswith("layer4.") for n in switched)
    assert not any(n.startswith(("layer1.", "layer2.")) for n in switched)
    assert model.training  # the probe pass restored the mode


def test_grouped_and_same_padded_convolutions_are_never_switched():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Conv2d(4, 4, 3, padding="same"),
                          nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))
    assert use_matmul_convs(model, (4, 3, 3)) == []


def test_matmul_conv_output_is_channels_last_without_a_copy():
    conv = nn.Conv2d(8, 16, 3, padding=1)
    conv.__class__ = MatmulConv2d
    y = conv(torch.rand(2, 8, 4, 4).contiguous(memory_format=torch.channels_last))
    assert y.shape == (2, 16, 4, 4)
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_matmul_conv_in_bf16_autocast_with_channels_last_weight_and_input() -> None:
    torch.manual_seed(0)
    ref = nn.Conv2d(16, 8, 3, padding=1, bias=True).double()
    mm = copy.deepcopy(ref).float()
    mm.__class__ = MatmulConv2d
    mm.weight.data = mm.weight.data.contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 16, 4, 4, dtype=torch.float64)
    xb = x.bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_()
    xr = xb.detach().double().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mm(xb)
    y_ref = ref(xr)
    torch.testing.assert_close(y.double(), y_ref, atol=0.05, rtol=0.02)
    g = torch.randn_like(y_ref)
    y.backward(g.to(y.dtype))
    y_ref.backward(g)
    assert xb.grad.dtype == torch.bfloat16 and mm.weight.grad.dtype == torch.float32
    # the weight gradient keeps the parameter's channels-last layout (fused AdamW needs no copy)
    assert mm.weight.grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(xb.grad.double(), xr.grad, atol=0.05, rtol=0.02)
    torch.testing.assert_close(mm.weight.grad.double(), ref.weight.grad, atol=0.1, rtol=0.02)
