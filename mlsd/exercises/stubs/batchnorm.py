"""Exercise: batch normalisation over (B, C) inputs, in train and in eval mode.

Train mode (self.training): normalise each feature with the CURRENT batch's mean and biased variance, then
scale by weight and shift by bias; update the running statistics:
running = (1 - momentum) * running + momentum * batch statistic (the variance's unbiased estimate).
Eval mode: normalise with the running statistics and leave them alone, so a sample's output no longer depends
on the other samples of its batch (and a batch of one works). The reference is torch.nn.BatchNorm1d.

Check your answer: `mlsd exercise check batchnorm`.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchNorm1d(nn.Module):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        # parameters self.weight (C,) ones and self.bias (C,) zeros;
        # buffers (self.register_buffer) running_mean (C,) zeros and running_var (C,) ones
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C) -> (B, C)."""
        raise NotImplementedError
