"""The edge model: a small MLP whose first layer standardizes raw features (so the ONNX file is self-contained)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class FraudMLP(nn.Module):
    """(B, D) float32 features -> (B, 1) fraud probability."""

    mean: torch.Tensor  # buffers (D,): the training features' mean and std, saved with the weights
    std: torch.Tensor

    def __init__(self, n_features: int, hidden: tuple[int, ...] = (64, 32)) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def fit_scaler(self, x: np.ndarray) -> None:
        self.mean.copy_(torch.from_numpy(x.mean(0)))
        self.std.copy_(torch.from_numpy(np.maximum(x.std(0), 1e-3)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)  # (B, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))  # (B, 1)


def zero_denormals(model: nn.Module, tiny: float = 1e-30) -> int:
    """Set weights with |w| < tiny to 0 (denormals can run 10-100x slower on CPUs); returns how many."""
    n = 0
    with torch.no_grad():
        for p in model.parameters():
            mask = (p != 0) & (p.abs() < tiny)
            n += int(mask.sum())
            p[mask] = 0.0
    return n
