"""The first-stage question, measured: a cross (joint user x video) model vs two-tower retrieval.

The cross model sees the user and the video together: [u, v, u*v, user features, video features] ->
MLP -> score, starting from the two-tower score and trained with the towers' own objective. It can model interactions the dot product cannot, but it must run once per
(user, video) pair: scoring the whole catalog per request costs N forward passes, while the two-tower
path costs one user-tower pass plus an ANN lookup. So it is measured two ways: as the first stage
(full catalog, a few users, milliseconds per request) and as a re-ranker of the ANN's top 200.
"""

from __future__ import annotations

import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch
from torch import nn

from infra.console import print_rows
from infra.metrics import mean_ndcg_at_k, mean_recall_at_k
from systems.recsys_two_tower import layout
from systems.recsys_two_tower.data import Feed, holdout_users
from systems.recsys_two_tower.evaluate import drop_seen
from systems.recsys_two_tower.features.definitions import USER_COLS
from systems.recsys_two_tower.features.repo import RecsysFeatures
from systems.recsys_two_tower.features.transform import user_inputs, video_inputs
from systems.recsys_two_tower.index import user_vectors
from systems.recsys_two_tower.model import USER_DENSE, VIDEO_DENSE, TwoTower
from systems.recsys_two_tower.train import TrainingSet

RERANK_DEPTH = 200


class CrossModel(nn.Module):
    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(3 * dim + USER_DENSE + VIDEO_DENSE, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1),
        )  # fmt: skip

        # starts from the two-tower score (cos / temperature) and learns the joint correction on top
        self.dot_scale = nn.Parameter(torch.tensor(20.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, u: torch.Tensor, v: torch.Tensor, ud: torch.Tensor, vd: torch.Tensor) -> torch.Tensor:
        # u (B, D) user vectors, v (B, D) video vectors, ud (B, USER_DENSE), vd (B, VIDEO_DENSE) -> (B,) logits
        dot = (u * v).sum(-1)  # (B,)
        return (
            self.dot_scale * dot + self.bias + self.mlp(torch.cat([u, v, u * v, ud, vd], dim=-1)).squeeze(-1)
        )


@torch.no_grad()
def _tower_vectors(towers: TwoTower, data: TrainingSet, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
    b = data.batch(idx)
    return towers.user(*b[:3]), towers.video(*b[3:7]), b[1], b[6]


def train_cross(
    towers: TwoTower, data: TrainingSet, steps: int = 400, batch: int = 128, seed: int = 0
) -> CrossModel:
    """The towers' own objective, with the joint model as the scorer: every user of a batch against every
    video of the batch (B x B pairs), sampled softmax with the same logQ correction."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CrossModel(towers.cfg.out_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = rng.integers(0, len(data), batch)
        u, v, ud, vd = _tower_vectors(towers, data, idx)
        log_q = torch.from_numpy(data.log_q[idx])
        ui, vj = torch.meshgrid(torch.arange(batch), torch.arange(batch), indexing="ij")  # (B, B) pairs
        logits = model(u[ui.ravel()], v[vj.ravel()], ud[ui.ravel()], vd[vj.ravel()]).view(batch, batch)
        loss = nn.functional.cross_entropy(logits - log_q[None, :], torch.arange(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def score_candidates(
    model: CrossModel, u: np.ndarray, ud: np.ndarray, vecs: np.ndarray, vdense: np.ndarray
) -> np.ndarray:
    n = len(vecs)
    return model(
        torch.from_numpy(np.repeat(u[None], n, 0)), torch.from_numpy(vecs),
        torch.from_numpy(np.repeat(ud[None], n, 0)), torch.from_numpy(vdense),
    ).numpy()  # fmt: skip


def run_cross_experiment(
    towers: TwoTower, feed: Feed, features: RecsysFeatures, root: Path, data: TrainingSet, catalog: pd.DataFrame,
    users_full: int = 5, users_rerank: int = 300, steps: int = 400, seed: int = 0,
) -> dict:  # fmt: skip
    """Quality and cost of: two-tower ANN top-k, cross model over the full catalog, cross re-ranking ANN top 200."""
    emb = np.load(root / layout.CATALOG_EMB)
    seen = np.load(root / layout.SEEN_VIDEOS)
    vdense = video_inputs(catalog, towers.cfg, seen, feed.split_ts)[3]
    t0 = time.perf_counter()
    cross = train_cross(towers, data, steps=steps, seed=seed)
    train_s = time.perf_counter() - t0
    users, targets, seens = holdout_users(feed, users_rerank, seed + 1)
    entity = pd.DataFrame(
        {"user_id": users, "event_timestamp": pd.Timestamp(feed.split_ts - 1, unit="s", tz="UTC")}
    )
    frame = features.repo.historical(entity, features.user_serving)
    udense = user_inputs({c: frame[c] for c in ["user_id", *USER_COLS]}, towers.cfg, seen)[1]
    queries = user_vectors(towers, features, users, feed.split_ts - 1, seen)
    index = faiss.read_index(str(root / layout.SERVING_INDEX))
    margin = max(len(s) for s in seens)
    t0 = time.perf_counter()
    _, cand = index.search(queries, RERANK_DEPTH + margin)
    ann_ms = (time.perf_counter() - t0) * 1000 / len(users)
    ann, reranked = [], []
    t0 = time.perf_counter()
    for i in range(len(users)):
        c = drop_seen(cand[i], seens[i], RERANK_DEPTH)
        c = c[c >= 0]
        ann.append(np.pad(c[:100], (0, 100 - len(c[:100])), constant_values=-1))
        s = score_candidates(cross, queries[i], udense[i], emb[c], vdense[c])
        order = c[np.argsort(-s)][:100]
        reranked.append(np.pad(order, (0, 100 - len(order)), constant_values=-1))
    rerank_ms = (time.perf_counter() - t0) * 1000 / len(users)
    full_ms = []
    full_recs = []
    for i in range(min(users_full, len(users))):
        t0 = time.perf_counter()
        s = score_candidates(cross, queries[i], udense[i], emb, vdense)
        s[seens[i]] = -np.inf
        top = np.argpartition(-s, 100)[:100]
        full_recs.append(top[np.argsort(-s[top])])
        full_ms.append((time.perf_counter() - t0) * 1000)
    n_full = len(full_recs)
    rows = {
        "two-tower ANN top-100": (np.stack(ann), targets, ann_ms),
        f"cross re-rank of ANN top {RERANK_DEPTH}": (np.stack(reranked), targets, ann_ms + rerank_ms),
        f"cross over the full catalog ({n_full} users)": (
            np.stack(full_recs),
            targets[:n_full],
            float(np.mean(full_ms)),
        ),
        f"two-tower ANN, same {n_full} users": (np.stack(ann[:n_full]), targets[:n_full], ann_ms),
    }
    table = {
        name: {
            "recall@10": mean_recall_at_k(r, t, 10),
            "ndcg@10": mean_ndcg_at_k(r, t, 10),
            "recall@100": mean_recall_at_k(r, t, 100),
            "ms_per_request": ms,
        }  # fmt: skip
        for name, (r, t, ms) in rows.items()
    }
    return {"users": len(users), "catalog": len(emb), "cross_train_seconds": train_s, "table": table}


def print_cross(result: dict) -> None:
    """The first-stage table: two-tower ANN, cross over the full catalog, cross re-ranking the ANN's top 200."""
    cols = ("recall@10", "ndcg@10", "recall@100", "ms_per_request")
    print_rows(f"two-tower vs cross model over {result['catalog']:,} videos ({result['users']} users)",
               ("first stage", *cols[:3], "ms / request"),
               [(n, *(r[c] for c in cols)) for n, r in result["table"].items()])  # fmt: skip
