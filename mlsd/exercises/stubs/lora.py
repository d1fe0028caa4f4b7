"""Exercise: a LoRA linear layer.

y = W x + b + (alpha / r) * B (A x), with the pretrained W, b frozen, A (r, in) initialised like nn.Linear's
weight (kaiming_uniform_ with a = sqrt(5)) and B (out, r) initialised to zeros, so training starts exactly at
the pretrained function and only A and B train. x may have any leading shape: (..., in) -> (..., out).

Check your answer: `mlsd exercise check lora`.
"""

from __future__ import annotations

import math  # noqa: F401  (for your answer: nn.init.kaiming_uniform_(A, a=math.sqrt(5)))

import torch
from torch import nn


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        # freeze base; self.lora_A: nn.Parameter (r, in); self.lora_B: nn.Parameter (out, r); self.scaling
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out)."""
        raise NotImplementedError
