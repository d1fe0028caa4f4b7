"""Checks for batch norm: train-mode output and running statistics equal torch.nn.BatchNorm1d's; eval mode uses
the running statistics, leaves them alone and works at batch size 1."""

from __future__ import annotations

from types import ModuleType

import torch
from torch import nn

from mlsd.exercises.harness import Check, Failed

NAMES = ("BatchNorm1d",)
C, MOMENTUM, EPS = 5, 0.1, 1e-5
TOL = 1e-9


def batches(n: int = 3, size: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(size, C, generator=g, dtype=torch.float64) * 3 + 2 for _ in range(n)]


def pair(m: ModuleType) -> tuple[nn.Module, nn.BatchNorm1d]:
    ours = m.BatchNorm1d(C, eps=EPS, momentum=MOMENTUM).double()
    ref = nn.BatchNorm1d(C, eps=EPS, momentum=MOMENTUM).double()
    names = {n for n, _ in ours.named_parameters()} | {n for n, _ in ours.named_buffers()}
    missing = {"weight", "bias", "running_mean", "running_var"} - names
    if missing:
        raise Failed(f"no {', '.join(sorted(missing))} among the layer's parameters and buffers",
                     "weight and bias are nn.Parameters; running_mean and running_var are register_buffer()s")  # fmt: skip
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in (ours, ref):
            layer.weight.copy_(torch.linspace(0.5, 2.0, C, dtype=torch.float64))
            layer.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64))
            g = torch.Generator().manual_seed(1)
    return ours, ref


def normalised(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    return (x - mean) / torch.sqrt(var + EPS) * layer.weight + layer.bias


def train_output(m: ModuleType) -> None:
    ours, ref = pair(m)
    x = batches()[0]
    with torch.no_grad():
        got, want = ours.train()(x), ref.train()(x)
    if torch.allclose(got, want, atol=TOL):
        return
    with torch.no_grad():
        if torch.allclose(got, normalised(x, x.mean(0), x.var(0, unbiased=True), ref), atol=1e-6):
            raise Failed("normalised with the unbiased batch variance",
                         "normalise with the biased batch variance (unbiased=False); only the running variance "
                         "is updated with the unbiased one")  # fmt: skip
        if torch.allclose(
            got,
            normalised(x, x.mean(0), x.var(0, unbiased=False), ref).sub(ref.bias).div(ref.weight),
            atol=1e-6,
        ):
            raise Failed(
                "weight and bias are not applied", "y = (x - mean) / sqrt(var + eps) * weight + bias"
            )
    raise Failed(f"train mode: max |difference| from nn.BatchNorm1d {(got - want).abs().max():.2e}")


def running_stats(m: ModuleType) -> None:
    ours, ref = pair(m)
    ours.train(), ref.train()
    with torch.no_grad():
        for x in batches():
            ours(x), ref(x)
    if torch.allclose(ours.running_mean, ref.running_mean, atol=TOL) and torch.allclose(
        ours.running_var, ref.running_var, atol=TOL
    ):
        return
    detail = (f"after 3 batches running_mean is off by {(ours.running_mean - ref.running_mean).abs().max():.2e}, "
              f"running_var by {(ours.running_var - ref.running_var).abs().max():.2e}")  # fmt: skip
    mean, var = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    for x in batches():  # the update with the two usual mistakes, to name the one made
        mean, var = (
            (1 - MOMENTUM) * mean + MOMENTUM * x.mean(0),
            (1 - MOMENTUM) * var + MOMENTUM * x.var(0, unbiased=False),
        )
    if torch.allclose(ours.running_var, var, atol=TOL):
        raise Failed(detail, "update running_var with the UNBIASED batch variance (x.var(0, unbiased=True))")
    mean = torch.zeros(C, dtype=torch.float64)
    for x in batches():
        mean = MOMENTUM * mean + (1 - MOMENTUM) * x.mean(0)
    if torch.allclose(ours.running_mean, mean, atol=TOL):
        raise Failed(
            detail, "running = (1 - momentum) * running + momentum * batch: momentum weighs the NEW batch"
        )
    raise Failed(detail)


def eval_uses_running_stats(m: ModuleType) -> None:
    ours, ref = pair(m)
    ours.train(), ref.train()
    with torch.no_grad():
        for x in batches():
            ours(x), ref(x)
        ours.eval(), ref.eval()
        x = batches(1, 6)[0] + 5.0  # a shifted batch: its own statistics are far from the running ones
        got, want = ours(x), ref(x)
        if torch.allclose(got, want, atol=1e-6):
            return
        if torch.allclose(got, normalised(x, x.mean(0), x.var(0, unbiased=False), ref), atol=1e-6):
            raise Failed("eval() output equals the batch-statistics output")
    raise Failed(f"eval mode: max |difference| from nn.BatchNorm1d {(got - want).abs().max():.2e}",
                 "y = (x - running_mean) / sqrt(running_var + eps) * weight + bias in eval()")  # fmt: skip


def eval_leaves_stats(m: ModuleType) -> None:
    ours, _ = pair(m)
    ours.eval()
    before = ours.running_mean.clone(), ours.running_var.clone()
    with torch.no_grad():
        ours(batches()[0])
    if not (torch.equal(before[0], ours.running_mean) and torch.equal(before[1], ours.running_var)):
        raise Failed("a forward pass in eval() changed the running statistics")


def eval_batch_of_one(m: ModuleType) -> None:
    ours, ref = pair(m)
    ours.eval(), ref.eval()
    x = batches(1, 1)[0]
    with torch.no_grad():
        got, want = ours(x), ref(x)
    if not torch.allclose(got, want, atol=1e-6):
        raise Failed(f"batch size 1 in eval(): max |difference| {(got - want).abs().max():.2e}")


CHECKS = [
    Check("train mode: output equals nn.BatchNorm1d's (batch mean, biased variance, weight, bias)", train_output,
          "y = (x - x.mean(0)) / sqrt(x.var(0, unbiased=False) + eps) * weight + bias"),
    Check("train mode: running statistics equal nn.BatchNorm1d's after 3 batches", running_stats,
          "update them in training only: running = (1 - momentum) * running + momentum * batch (variance unbiased)"),
    Check("eval mode: normalises with the running statistics", eval_uses_running_stats,
          "in eval() normalise with running_mean / running_var, not the batch's statistics: a sample's output "
          "must not depend on its batch"),
    Check("eval mode: the running statistics do not move", eval_leaves_stats,
          "update the running statistics only when self.training is True"),
    Check("eval mode: a batch of one works", eval_batch_of_one,
          "a batch of one has no variance: eval() must not compute batch statistics at all"),
]  # fmt: skip
