"""The training loop's parts: weight average, learning-rate schedule, class prior."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from training.loop import class_prior, warmup_cosine_schedule, weight_ema


def _reference_ema(steps: list[list[torch.Tensor]], start: list[torch.Tensor], decay: float) -> list[torch.Tensor]:
    """The average the loop promises: decay ``min(decay, (1 + t) / (10 + t))`` at update t."""
    avg = [s.clone() for s in start]
    for t, params in enumerate(steps, start=1):
        d = min(decay, (1 + t) / (10 + t))
        avg = [d * a + (1 - d) * p for a, p in zip(avg, params, strict=True)]
    return avg


def test_weight_ema_follows_the_warm_up_decay_and_copies_buffers() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = weight_ema(model, horizon_steps=20)
    assert ema.decay == pytest.approx(1 - 1 / 21)
    start = [p.detach().clone() for p in model.parameters()]
    seen: list[list[torch.Tensor]] = []
    for t in range(1, 61):  # long enough for the warm-up to reach the horizon's decay
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.fill_(float(t))
        seen.append([p.detach().clone() for p in model.parameters()])
        ema.update(model, step=t)
    for e, r in zip(ema.module.parameters(), _reference_ema(seen, start, ema.decay), strict=True):
        torch.testing.assert_close(e, r, rtol=1e-5, atol=1e-5)
        assert not e.requires_grad
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 60.0))  # copied, not averaged


def test_weight_ema_first_update_keeps_two_elevenths_of_the_start() -> None:
    model = torch.nn.Linear(2, 1)
    ema = weight_ema(model, horizon_steps=100)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=1)
    for e, s in zip(ema.module.parameters(), start, strict=True):
        torch.testing.assert_close(e, s + 9 / 11)


def _lrs(total: int, warmup: int, peak: float = 1.0) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=peak)
    sched = warmup_cosine_schedule(opt, total_steps=total, warmup_steps=warmup)
    out = [opt.param_groups[0]["lr"]]
    for t in range(1, total + 1):
        opt.step()
        sched.step_update(num_updates=t)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_zero() -> None:
    total, warmup = 40, 8
    lrs = _lrs(total, warmup, peak=2.0)
    assert lrs[0] == pytest.approx(2.0 / warmup)
    assert all(b > a for a, b in itertools.pairwise(lrs[: warmup + 1]))
    for t in range(warmup, total + 1):
        cosine = 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
        assert lrs[t] == pytest.approx(2.0 * cosine, abs=1e-12)
    assert lrs[warmup] == pytest.approx(2.0) and lrs[total] == pytest.approx(0.0, abs=1e-12)


def test_schedule_without_warm_up_starts_at_the_peak() -> None:
    lrs = _lrs(10, 0, peak=0.5)
    assert lrs[0] == pytest.approx(0.5)
    assert lrs[5] == pytest.approx(0.25)


def test_class_prior_counts_every_class_at_least_once() -> None:
    np.testing.assert_allclose(class_prior(np.array([0, 0, 0, 1]), 3), [0.75, 0.25, 0.25])
