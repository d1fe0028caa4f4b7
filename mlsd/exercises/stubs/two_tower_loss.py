"""Exercise: the two-tower in-batch sampled-softmax loss, with the logQ correction.

A batch holds B (user, watched video) pairs. Each user must pick its own video among the B videos of the
batch: logit_ij = u_i . v_j / temperature - log Q(v_j), where Q(v_j) is the probability that video j appears in
a batch (its share of training watches). Popular videos are negatives far more often than their share of the
catalog; without the correction the model learns to push them down. The loss is the cross entropy of each row
against its diagonal entry, SUMMED over the batch.

Check your answer: `mlsd exercise check two-tower-loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401  (for your answer)


def in_batch_softmax_loss(
    user_vecs: torch.Tensor, video_vecs: torch.Tensor, log_q: torch.Tensor, temperature: float
) -> torch.Tensor:
    """user_vecs (B, D), video_vecs (B, D) (row i of each is a positive pair), log_q (B,) -> a scalar."""
    # logits (B, B): rows are users, columns are the batch's videos
    raise NotImplementedError
