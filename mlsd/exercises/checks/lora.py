"""Checks for LoRA: frozen base, A and B shapes and init, the pretrained function at init, the alpha / r
scaling, and equality with the project's LoRALinear (itself equal to peft's, tests/fundamentals)."""

from __future__ import annotations

from types import ModuleType

import torch
from torch import nn

from fundamentals.adapters import LoRALinear as ReferenceLoRA
from mlsd.exercises.harness import Check, Failed

NAMES = ("LoRALinear",)
IN, OUT, R, ALPHA = 12, 10, 4, 8.0
TOL = 1e-6


def base() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(IN, OUT)


def inputs() -> torch.Tensor:
    return torch.randn(2, 3, IN, generator=torch.Generator().manual_seed(1))  # (B, T, in): leading axes


def make(m: ModuleType) -> nn.Module:
    layer = m.LoRALinear(base(), R, ALPHA)
    for name in ("lora_A", "lora_B", "base"):
        if not hasattr(layer, name):
            raise Failed(f"the layer has no attribute {name}", "keep the stub's names: base, lora_A, lora_B")
    return layer


def trains_only_a_and_b(m: ModuleType) -> None:
    layer = make(m)
    trainable = sorted(n for n, p in layer.named_parameters() if p.requires_grad)
    if trainable != ["lora_A", "lora_B"]:
        raise Failed(f"trainable parameters: {trainable}")


def shapes_and_init(m: ModuleType) -> None:
    layer = make(m)
    a, b = layer.lora_A, layer.lora_B
    if tuple(a.shape) != (R, IN) or tuple(b.shape) != (OUT, R):
        raise Failed(f"lora_A {tuple(a.shape)}, lora_B {tuple(b.shape)}; expected ({R}, {IN}) and ({OUT}, {R})",
                     "A maps in -> r: (r, in); B maps r -> out: (out, r)")  # fmt: skip
    if not torch.all(b == 0) or torch.all(a == 0):
        raise Failed(f"|A| max {a.abs().max():.3g}, |B| max {b.abs().max():.3g} at init")


def starts_at_pretrained(m: ModuleType) -> None:
    layer, x = make(m), inputs()
    got = layer(x)
    want = base()(x)
    if got.shape != want.shape:
        raise Failed(f"output shape {tuple(got.shape)} for input {tuple(x.shape)}; expected {tuple(want.shape)}",
                     "apply to the last axis: x @ A.T @ B.T works for any leading shape")  # fmt: skip
    if not torch.allclose(got, want, atol=TOL):
        raise Failed(f"at init the output differs from base(x) by {(got - want).abs().max():.2e}")
    got.sum().backward()
    if layer.lora_B.grad is None or layer.lora_B.grad.abs().max() == 0:
        raise Failed("no gradient reaches lora_B at init", "the update must be computed from lora_A and lora_B "
                     "with torch ops (no .data or .detach()) so both get gradients")  # fmt: skip


def scaled_update(m: ModuleType) -> None:
    layer, x = make(m), inputs()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        layer.lora_A.copy_(torch.randn(R, IN, generator=g))
        layer.lora_B.copy_(torch.randn(OUT, R, generator=g))
        got = layer(x)
        delta = x @ layer.lora_A.T @ layer.lora_B.T  # (B, T, out) without scaling
        frozen = base()(x)
    if torch.allclose(got, frozen + ALPHA / R * delta, atol=1e-5):
        return
    for scale, hint in ((ALPHA, "scale by alpha / r, not alpha"), (1.0, "the update is not scaled: multiply it by alpha / r"),
                        (R / ALPHA, "scale by alpha / r, not r / alpha")):  # fmt: skip
        if torch.allclose(got, frozen + scale * delta, atol=1e-5):
            raise Failed(f"the update is scaled by {scale:g}, expected alpha / r = {ALPHA / R:g}", hint)
    raise Failed(
        f"with nonzero A and B: max |difference| {(got - frozen - ALPHA / R * delta).abs().max():.2e}"
    )


def matches_reference(m: ModuleType) -> None:
    layer, ref, x = make(m), ReferenceLoRA(base(), R, ALPHA), inputs()
    with torch.no_grad():
        ref.lora_A.copy_(layer.lora_A)
        ref.lora_B.copy_(torch.randn(OUT, R, generator=torch.Generator().manual_seed(3)))
        layer.lora_B.copy_(ref.lora_B)
        diff = (layer(x) - ref(x)).abs().max()
    if diff > 1e-5:
        raise Failed(f"max |difference| from fundamentals.adapters.LoRALinear {diff:.2e}")


CHECKS = [
    Check("only lora_A and lora_B train; the base layer is frozen", trains_only_a_and_b,
          "freeze the base layer (self.base.requires_grad_(False)) and make A and B nn.Parameters"),
    Check("A is (r, in) and random, B is (out, r) and zero", shapes_and_init,
          "B starts at zero (so the layer starts as the pretrained one) and A random: with both zero, "
          "no gradient reaches either"),
    Check("at init the layer is exactly the pretrained one, for inputs (B, T, in)", starts_at_pretrained,
          "the update is (alpha / r) * B A x: zero at init because B is zero"),
    Check("the update is scaled by alpha / r", scaled_update,
          "y = base(x) + (x @ A.T @ B.T) * (alpha / r)"),
    Check("equals the project's LoRALinear with the same A and B", matches_reference,
          "y = base(x) + (x @ A.T @ B.T) * (alpha / r)"),
]  # fmt: skip
