"""Device, precision and model placement."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from training.device import DeviceSetup, cpu_has_native_bf16, place_model, resolve_device_setup
from training.models import create_model
from training.small_conv import MatmulConv2d

CPU_BF16 = DeviceSetup(torch.device("cpu"), "bf16", True, "test")
CPU_FP32 = DeviceSetup(torch.device("cpu"), "fp32", False, "test")


def test_device_setup_precision_choices() -> None:
    fp32 = resolve_device_setup(device="cpu", precision="fp32")
    assert fp32.precision == "fp32" and not fp32.channels_last and fp32.autocast_dtype is None
    auto = resolve_device_setup(device="cpu", precision="auto")
    assert auto.precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert auto.channels_last == (auto.precision == "bf16")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        resolve_device_setup(device="cpu", precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device_setup(device="cuda")


def test_messages_name_parameters_not_command_line_flags(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="precision='bf16'") as err:
        resolve_device_setup(device="cpu", precision="fp16")
    assert "--" not in str(err.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cpu'") as err:
            resolve_device_setup(device="cuda")
        assert "--" not in str(err.value)
    if not cpu_has_native_bf16():
        with caplog.at_level(logging.WARNING, logger="training.device"):
            resolve_device_setup(device="cpu", precision="bf16")
        assert "precision='fp32'" in caplog.text and "--" not in caplog.text


def test_place_model_keeps_the_function_and_the_state_dict():
    torch.manual_seed(0)
    plain = create_model("resnet18", 3, 1).eval()
    placed = place_model(copy.deepcopy(plain), CPU_BF16, (1, 64, 64)).eval()
    assert any(isinstance(m, MatmulConv2d) for m in placed.modules())
    assert placed.state_dict().keys() == plain.state_dict().keys()
    reloaded = create_model("resnet18", 3, 1)
    reloaded.load_state_dict(placed.state_dict(), strict=True)
    x = torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        # Same function in fp32 (only the bf16 autocast path differs by rounding).
        torch.testing.assert_close(placed(x), plain(x), rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast, ref = placed(x.contiguous(memory_format=torch.channels_last)), plain(x)
    torch.testing.assert_close(fast.float(), ref.float(), rtol=0.1, atol=0.1)


def test_place_model_switches_nothing_in_fp32_or_on_large_maps():
    fp32 = place_model(create_model("resnet18", 2, 1), CPU_FP32, (1, 64, 64))
    assert not any(isinstance(m, MatmulConv2d) for m in fp32.modules())
    large = place_model(create_model("resnet18", 2, 1), CPU_BF16, (1, 256, 256))
    assert not any(isinstance(m, MatmulConv2d) for m in large.modules())


