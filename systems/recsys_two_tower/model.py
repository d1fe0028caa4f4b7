"""Two towers: a user tower and a video tower mapping into one 64-d space; score = cosine similarity.

Loss: in-batch sampled softmax. Each user in a batch of B (user, watched video) pairs must pick its own
video among the B videos of the batch. Popular videos appear as negatives more often than their share
of the catalog, so the logits get the logQ correction: logit_ij = cos(u_i, v_j) / tau - log Q(v_j),
with Q(v) the probability that v is in a batch (its share of training watches). `logq` scales the correction
(1: the unbiased estimate of the full softmax; 0: none, which ranks by P(v | u) / Q(v) and buries the popular
videos a top-10 needs; DESIGN section 11 measures both on MovieLens).

Mixed negatives (Yang et al. 2020): `uniform_negatives` more videos drawn uniformly from the trained catalog
join each batch's negatives, each logit corrected by the log of its expected count in its own draw: B * Q(v) for
the in-batch videos, M / N for M uniform draws over N videos.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from systems.recsys_two_tower.config import TowerConfig
from systems.recsys_two_tower.data import CONTENT_DIM, N_TOPICS

USER_DENSE = 3 + N_TOPICS  # log watches 7d, log watches 30d, mean completion, topic mix
VIDEO_DENSE = 4 + CONTENT_DIM  # log duration, log pop 7d, completion 7d, log age, content vector


def hash_ids(ids: np.ndarray, buckets: int) -> np.ndarray:
    """Multiplicative hashing of int64 ids into [1, buckets); bucket 0 is reserved for 'unknown/pad'."""
    ids = np.asarray(ids, dtype=np.int64)
    h = (ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(buckets - 1)
    return np.where(ids < 0, 0, h.astype(np.int64) + 1)


def init_embeddings(module: nn.Module, std: float) -> None:
    """Embeddings drawn from N(0, std^2) instead of PyTorch's N(0, 1) (std 0 keeps the default)."""
    if std > 0:
        for m in module.modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=std)
                if m.padding_idx is not None:
                    m.weight.data[m.padding_idx] = 0.0


class UserTower(nn.Module):
    feature_gate: torch.Tensor  # a buffer: () 1.0, or 0.0 for "ids alone"

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        # 1, or 0 for "ids alone": history and counts stay inputs (serving calls one graph) but weigh nothing
        self.register_buffer("feature_gate", torch.tensor(1.0 if cfg.features else 0.0), persistent=False)
        # sparse: a step touches ~B rows of each table, so only those rows get gradients and updates
        self.user_emb = nn.Embedding(cfg.user_buckets, cfg.id_dim, sparse=True)
        self.history_emb = nn.Embedding(cfg.video_buckets, cfg.id_dim, padding_idx=0, sparse=True)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.id_dim * 2 + USER_DENSE, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.out_dim)
        )

    def forward(self, user_bucket: torch.Tensor, dense: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        # user_bucket (B,), dense (B, USER_DENSE), history (B, H) bucket ids, 0 = padding
        mask = (history > 0).unsqueeze(-1).float()  # (B, H, 1)
        pooled = (self.history_emb(history) * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, D)
        gate = self.feature_gate
        x = torch.cat([self.user_emb(user_bucket), pooled * gate, dense * gate], dim=-1)  # (B, 2D + F)
        return F.normalize(self.mlp(x), dim=-1)  # (B, out)


class VideoTower(nn.Module):
    feature_gate: torch.Tensor  # a buffer: () 1.0, or 0.0 for "ids alone"

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.register_buffer("feature_gate", torch.tensor(1.0 if cfg.features else 0.0), persistent=False)
        self.video_emb = nn.Embedding(cfg.video_buckets, cfg.id_dim, sparse=True)
        self.topic_emb = nn.Embedding(N_TOPICS, 8)
        self.creator_emb = nn.Embedding(cfg.creator_buckets, 16, sparse=True)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.id_dim + 8 + 16 + VIDEO_DENSE, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.out_dim),
        )

    def forward(
        self,
        video_bucket: torch.Tensor,
        topic: torch.Tensor,
        creator_bucket: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        # video_bucket (B,) (0 for videos unseen in training: content features carry them), dense (B, VIDEO_DENSE)
        x = torch.cat(
            [
                self.video_emb(video_bucket),
                self.topic_emb(topic),
                self.creator_emb(creator_bucket),
                dense * self.feature_gate,
            ],
            dim=-1,
        )
        return F.normalize(self.mlp(x), dim=-1)  # (B, out)


class TwoTower(nn.Module):
    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.user = UserTower(cfg)
        self.video = VideoTower(cfg)
        init_embeddings(self, cfg.init_std)


def in_batch_softmax_loss(
    user_vecs: torch.Tensor,
    video_vecs: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
    offset: int = 0,
    logq: float = 1.0,
) -> torch.Tensor:
    """Summed sampled-softmax loss over the batch's videos, with logQ correction of strength `logq`.

    user_vecs (B, D): this process's rows; video_vecs (N, D): every video of the global batch, where row i's
    positive sits at offset + i (N = B and offset = 0 in a single process), then any uniform negatives; log_q
    (N,): the log of each column's expected count in its draw.
    """
    logits = user_vecs @ video_vecs.T / temperature - logq * log_q[None, :]  # (B, N)
    labels = offset + torch.arange(user_vecs.shape[0])
    return F.cross_entropy(logits, labels, reduction="sum")


def two_tower_loss(
    model: TwoTower,
    user_bucket: torch.Tensor,
    user_dense: torch.Tensor,
    history: torch.Tensor,
    video_bucket: torch.Tensor,
    topic: torch.Tensor,
    creator_bucket: torch.Tensor,
    video_dense: torch.Tensor,
    log_q: torch.Tensor,
    *,
    global_batch: int,
    negatives: tuple[torch.Tensor, ...] = (),
) -> torch.Tensor:
    """Mean in-batch loss over the global batch, as seen from this process's shard.

    With torch.distributed up, every process embeds its own shard, the video vectors are all-gathered
    (with gradients), and each process's loss is scaled by world_size so that DDP's gradient averaging
    gives exactly the single-process gradient of the same global batch. `negatives`: the uniform draws' video
    inputs and their log expected counts (video_bucket, topic, creator_bucket, video_dense, log_q), shared by all
    processes; with them the in-batch log_q gains log(global_batch), its expected count's factor.
    """
    u = model.user(user_bucket, user_dense, history)  # (b, D)
    v = model.video(video_bucket, topic, creator_bucket, video_dense)  # (b, D)
    world, rank = 1, 0
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # imported here: torch.distributed.nn exists only in builds with distributed support
        from torch.distributed.nn.functional import all_gather

        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        v = torch.cat(all_gather(v), dim=0)  # (global_batch, D)
        log_q = torch.cat(all_gather(log_q), dim=0)
    if negatives:
        extra = model.video(*negatives[:4])  # (M, D)
        v = torch.cat([v, extra], dim=0)  # (global_batch + M, D)
        log_q = torch.cat([log_q + float(np.log(global_batch)), negatives[4]])
    loss = in_batch_softmax_loss(
        u, v, log_q, model.cfg.temperature, offset=rank * u.shape[0], logq=model.cfg.logq
    )
    return loss * world / global_batch


class TwoTowerLoss(nn.Module):
    """TwoTower whose forward is the loss: what DDP wraps."""

    def __init__(self, model: TwoTower) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, *batch: torch.Tensor, global_batch: int, negatives: tuple[torch.Tensor, ...] = ()
    ) -> torch.Tensor:
        return two_tower_loss(self.model, *batch, global_batch=global_batch, negatives=negatives)
