"""Two CTR models over the same inputs: hashed logistic regression (baseline) and DeepFM.

Inputs, for a batch of B impressions with F categorical fields and N numeric ones:
    cat  (B, F) int64   bucket ids in one shared hashed table (field-salted, see features.hash_fields)
    num  (B, N) float32
Output: (B,) logits. `CalibratedScorer` wraps either for export: it adds log(w) to undo negative
downsampling (odds are multiplied by w, i.e. q = p / (p + (1 - p) / w)) and returns probabilities.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BASE_LOGIT = -2.0  # start near a typical CTR, not at p = 0.5


class HashedLogReg(nn.Module):
    """logit = b + sum_f w[bucket_f] + v . num: one weight per hashed value, no interactions."""

    def __init__(self, n_buckets: int, n_numeric: int) -> None:
        super().__init__()
        self.weight = nn.Embedding(n_buckets, 1)
        nn.init.zeros_(self.weight.weight)
        self.numeric = nn.Linear(n_numeric, 1)
        nn.init.constant_(self.numeric.bias, BASE_LOGIT)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return self.weight(cat).sum(dim=(1, 2)) + self.numeric(num).squeeze(-1)  # (B,)


class DeepFM(nn.Module):
    """Guo et al. 2017: first-order weights + FM pairwise interactions + an MLP, sharing embeddings.

    Each numeric feature is a field too: its embedding is a learned vector scaled by the value.
    """

    def __init__(self, n_buckets: int, n_fields: int, n_numeric: int, dim: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.first = nn.Embedding(n_buckets, 1)
        nn.init.zeros_(self.first.weight)
        self.embed = nn.Embedding(n_buckets, dim)
        nn.init.normal_(self.embed.weight, std=0.05)
        self.num_first = nn.Linear(n_numeric, 1)
        nn.init.constant_(self.num_first.bias, BASE_LOGIT)
        self.num_embed = nn.Parameter(torch.randn(n_numeric, dim) * 0.05)
        n_in = (n_fields + n_numeric) * dim + n_numeric
        self.mlp = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        v = torch.cat([self.embed(cat), num.unsqueeze(-1) * self.num_embed], dim=1)  # (B, F+N, D)
        first = self.first(cat).sum(dim=(1, 2)) + self.num_first(num).squeeze(-1)  # (B,)
        # sum_{i<j} <v_i, v_j> = 1/2 ((sum v)^2 - sum v^2), summed over the D dimensions
        fm = 0.5 * (v.sum(dim=1).pow(2) - v.pow(2).sum(dim=1)).sum(dim=1)  # (B,)
        deep = self.mlp(torch.cat([v.flatten(1), num], dim=1)).squeeze(-1)  # (B,)
        return first + fm + deep


class CalibratedScorer(nn.Module):
    """What is exported to ONNX: probabilities, corrected for a negative keep-rate w."""

    def __init__(self, model: nn.Module, negative_keep_rate: float) -> None:
        super().__init__()
        self.model = model
        self.log_w = math.log(negative_keep_rate)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(cat, num) + self.log_w)  # (B,)


def build_model(kind: str, n_buckets: int, n_fields: int, n_numeric: int) -> nn.Module:
    if kind == "lr":
        return HashedLogReg(n_buckets, n_numeric)
    if kind == "deepfm":
        return DeepFM(n_buckets, n_fields, n_numeric)
    raise ValueError(f"model kind must be lr or deepfm, got {kind!r}")
