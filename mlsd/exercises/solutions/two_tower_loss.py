"""Reference answer: the project's own loss (systems/recsys_two_tower/model.py), single process (offset 0)."""

from __future__ import annotations

import torch

from systems.recsys_two_tower.model import in_batch_softmax_loss as project_loss


def in_batch_softmax_loss(
    user_vecs: torch.Tensor, video_vecs: torch.Tensor, log_q: torch.Tensor, temperature: float
) -> torch.Tensor:
    return project_loss(user_vecs, video_vecs, log_q, temperature)
