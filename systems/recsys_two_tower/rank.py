"""The ranking stage behind retrieval: the ANN's CANDIDATES -> a small ranker over user x video features ->
a policy layer (seen filter, per-creator cap) -> k.

Why a second stage: the two towers meet only in a dot product of features each side sees alone. The ranker
sees the pair: the user's share of recent watches in the candidate's length bin (the generator's duration
taste, data.py), the user's share of the candidate's topic, the tower score and the ANN position, the
candidate's popularity. It scores a few hundred candidates, not the catalog, so it can afford the pair.

Training (`mlsd recsys rank`): the last RANK_DAYS of the training period are the ranker's labels. For users
active then, the towers (as of the window's start) retrieve CANDIDATES unseen videos from the serving index;
a candidate the user watched in the window is a positive. Loss: listwise softmax over each user's candidates
(-mean log-probability of the positives), which is what nDCG rewards. The towers were trained on that window
too, so their score is a little optimistic on it: the ranker may trust it more than it should (DESIGN.md).

The ranker is exported to ONNX and served with infra.serving.onnx.make_session, like the user tower. Every
file it writes carries the training run id of the towers it was trained behind (serve.py checks it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import onnxruntime as ort
import pandas as pd
import torch
from torch import nn

from infra.artifacts import atomic_write
from infra.serving.onnx import make_session
from systems.recsys_two_tower import layout
from systems.recsys_two_tower.data import DAY, N_DURATION_BINS, N_SUB, Feed, duration_bin
from systems.recsys_two_tower.features.definitions import HISTORY_COLS, TOPIC_COLS, USER_COLS
from systems.recsys_two_tower.features.repo import RecsysFeatures
from systems.recsys_two_tower.features.transform import user_inputs
from systems.recsys_two_tower.model import TwoTower

CANDIDATES = 200  # what the ANN hands the ranker
CREATOR_CAP = 2  # at most this many videos of one creator in the k returned (relaxed when k cannot be met)
RANK_DAYS = 3  # the last days of the training period: the ranker's labels
# one row per (user, candidate); DESIGN.md lists them
RANK_FEATURES = (
    "tower_score", "ann_position", "length_share", "topic_share", "log_pop_7d", "history_len",
    *[f"length_bin_{b}" for b in range(N_DURATION_BINS)],
)  # fmt: skip
N_FEATURES = len(RANK_FEATURES)


@dataclass(frozen=True)
class RankCatalog:
    """What the ranker knows of each video, as of the split (row i = video i): a snapshot beside the index."""

    length: np.ndarray  # (V,) int64 length bin
    topic: np.ndarray  # (V,) int64
    creator: np.ndarray  # (V,) int64
    log_pop: np.ndarray  # (V,) float32 log(1 + watches in the last 7 days)

    @classmethod
    def from_feed(cls, feed: Feed) -> RankCatalog:
        v = feed.videos
        train = feed.events[
            (feed.events["ts"] < feed.split_ts) & (feed.events["ts"] >= feed.split_ts - 7 * DAY)
        ]
        pop = np.bincount(train["video_id"].to_numpy(), minlength=len(v))
        return cls(
            duration_bin(v["duration_s"].to_numpy()),
            (v["cluster"].to_numpy() // N_SUB).astype(np.int64),
            v["creator_id"].to_numpy(np.int64),
            np.log1p(pop).astype(np.float32),
        )

    def save(self, path: Path) -> None:
        with atomic_write(path) as f:
            np.savez(f, **self.__dict__)

    @classmethod
    def load(cls, path: Path) -> RankCatalog:
        z = np.load(path)
        return cls(z["length"], z["topic"], z["creator"], z["log_pop"])


def user_profile(cols: Mapping[str, Sequence[Any]], catalog: RankCatalog, row: int = 0) -> np.ndarray:
    """(N_DURATION_BINS + N_TOPICS + 1,) for one user: smoothed length-bin shares of the recent watches,
    topic shares of the last 30 days, history length. Defaults (no history) give uniform shares."""
    history = np.array([cols[c][row] for c in HISTORY_COLS], dtype=object)
    ids = np.array([int(h) for h in history if h is not None and h == h and int(h) >= 0], dtype=np.int64)
    ids = ids[ids < len(catalog.length)]
    counts = np.bincount(catalog.length[ids], minlength=N_DURATION_BINS).astype(np.float32)
    length_share = (counts + 0.5) / (counts.sum() + 0.5 * N_DURATION_BINS)
    topics = np.array(
        [0.0 if cols[c][row] is None or cols[c][row] != cols[c][row] else cols[c][row] for c in TOPIC_COLS],
        dtype=np.float32,
    )
    return np.concatenate([length_share, topics, [len(ids) / len(HISTORY_COLS)]]).astype(np.float32)


def rank_features(
    profile: np.ndarray, candidates: np.ndarray, tower_scores: np.ndarray, catalog: RankCatalog
) -> np.ndarray:
    """(len(candidates), N_FEATURES) float32: one row per (user, candidate), columns RANK_FEATURES."""
    n = len(candidates)
    length = catalog.length[candidates]
    onehot = np.zeros((n, N_DURATION_BINS), dtype=np.float32)
    onehot[np.arange(n), length] = 1.0
    return np.column_stack([
        tower_scores, np.arange(n, dtype=np.float32) / CANDIDATES,
        profile[length], profile[N_DURATION_BINS + catalog.topic[candidates]],
        catalog.log_pop[candidates], np.full(n, profile[-1], dtype=np.float32), onehot,
    ]).astype(np.float32)  # fmt: skip


class Ranker(nn.Module):
    """features (N, N_FEATURES) -> scores (N,): a two-layer MLP; a score's scale is per request only."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(N_FEATURES, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).squeeze(-1)  # (N,)


def policy(
    ranked: np.ndarray, scores: np.ndarray, seen: np.ndarray, creators: np.ndarray, k: int,
    cap: int = CREATOR_CAP,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The k to return, in ranked order: drop seen videos, then at most `cap` per creator; when that leaves
    fewer than k, the capped-out videos fill the rest in ranked order (a short feed is worse than a repeat)."""
    keep = (ranked >= 0) & ~np.isin(ranked, seen)
    ranked, scores, creators = ranked[keep], scores[keep], creators[keep]
    taken: dict[int, int] = {}
    first, rest = [], []
    for i, c in enumerate(creators.tolist()):
        if taken.get(c, 0) < cap:
            taken[c] = taken.get(c, 0) + 1
            first.append(i)
            if len(first) == k:
                break
        else:
            rest.append(i)
    pick = np.asarray((first + rest)[:k], dtype=np.int64)
    if len(pick) < k:  # the loop stopped early only when first reached k; otherwise take what is left
        pick = np.asarray((first + rest + list(range(len(first) + len(rest), len(ranked))))[:k], np.int64)
    return ranked[pick], scores[pick]


# ------------------------------------------------------------------------------------------ training
def _user_frame(features: RecsysFeatures, users: np.ndarray, as_of_ts: int) -> pd.DataFrame:
    entity = pd.DataFrame({"user_id": users, "event_timestamp": pd.Timestamp(as_of_ts, unit="s", tz="UTC")})
    return features.repo.historical(entity, features.user_serving)


def candidates_for(
    towers: TwoTower, features: RecsysFeatures, index: faiss.Index, users: np.ndarray, as_of_ts: int,
    seen_videos: np.ndarray, seens: list[np.ndarray],
) -> tuple[pd.DataFrame, list[np.ndarray], list[np.ndarray]]:  # fmt: skip
    """Each user's user_stats row as of as_of_ts and their first CANDIDATES unseen ANN candidates with scores."""
    frame = _user_frame(features, users, as_of_ts)
    inputs = user_inputs({c: frame[c] for c in ["user_id", *USER_COLS]}, towers.cfg, seen_videos)
    with torch.no_grad():
        queries = towers.user(*[torch.from_numpy(a) for a in inputs]).numpy()
    margin = max((len(s) for s in seens), default=0)
    scores, ids = index.search(queries, min(index.ntotal, CANDIDATES + margin))
    cands, cand_scores = [], []
    for row, srow, s in zip(ids, scores, seens, strict=True):
        keep = (row >= 0) & ~np.isin(row, s)
        cands.append(row[keep][:CANDIDATES])
        cand_scores.append(srow[keep][:CANDIDATES].astype(np.float32))
    return frame, cands, cand_scores


def _profiles(frame: pd.DataFrame, catalog: RankCatalog) -> list[np.ndarray]:
    cols = {c: frame[c].tolist() for c in ["user_id", *USER_COLS]}
    return [user_profile(cols, catalog, i) for i in range(len(frame))]


def train_ranker(
    towers: TwoTower, feed: Feed, features: RecsysFeatures, index: faiss.Index, seen_videos: np.ndarray,
    catalog: RankCatalog, max_users: int = 3000, epochs: int = 300, seed: int = 0,
) -> tuple[Ranker, dict]:  # fmt: skip
    """The ranker on the last RANK_DAYS of training (see the module docstring); returns it and its figures."""
    start = feed.split_ts - RANK_DAYS * DAY
    ev = feed.events[feed.events["ts"] < feed.split_ts]
    before, window = ev[ev["ts"] < start], ev[ev["ts"] >= start]
    seen = before.groupby("user_id")["video_id"].apply(lambda s: np.unique(s.to_numpy()))
    label = window.groupby("user_id")["video_id"].apply(lambda s: np.unique(s.to_numpy()))
    rng = np.random.default_rng(seed)
    users = label.index.to_numpy()
    users = np.sort(rng.choice(users, size=min(max_users, len(users)), replace=False))
    seens = [seen.get(u, np.empty(0, np.int64)) for u in users]
    frame, cands, cand_scores = candidates_for(towers, features, index, users, start - 1, seen_videos, seens)
    profiles = _profiles(frame, catalog)
    xs, ys = [], []
    for u, c, s, p in zip(users, cands, cand_scores, profiles, strict=True):
        watched = np.isin(c, label[u]).astype(np.float32)
        if watched.sum() == 0 or len(c) < 2:
            continue  # no positive among the candidates: nothing to order
        xs.append(torch.from_numpy(rank_features(p, c, s, catalog)))
        ys.append(torch.from_numpy(watched))
    if not xs:
        raise RuntimeError("no ranker training user has a watched video among its candidates")
    lengths = [len(y) for y in ys]
    x = nn.utils.rnn.pad_sequence(xs, batch_first=True)  # (U, N, F)
    y = nn.utils.rnn.pad_sequence(ys, batch_first=True)  # (U, N)
    pad = torch.arange(x.shape[1])[None, :] >= torch.tensor(lengths)[:, None]  # (U, N)
    torch.manual_seed(seed)
    model = Ranker()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(epochs):  # full batch: a few thousand users x CANDIDATES rows
        logits = model(x).masked_fill(pad, -1e9)  # (U, N)
        loss = -((torch.log_softmax(logits, -1) * y).sum(-1) / y.sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return model.eval(), {
        "users": len(users), "users_with_positive": len(xs), "positives": float(y.sum()),
        "first_loss": losses[0], "final_loss": losses[-1], "window_days": RANK_DAYS,
    }  # fmt: skip


def export_ranker(model: Ranker, path: Path) -> float:
    """ONNX export; returns max |onnx - torch| on random rows (must be < 1e-4)."""
    example = torch.rand(CANDIDATES, N_FEATURES)

    with atomic_write(path) as f:
        torch.onnx.export(
            model, (example,), f, input_names=["features"], output_names=["score"],
            dynamic_axes={"features": {0: "n"}, "score": {0: "n"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    got = make_session(path, threads=1).run(None, {"features": example.numpy()})[0]
    with torch.no_grad():
        want = model(example).numpy()
    return float(np.abs(got - want).max())


def rank_candidates(
    session: ort.InferenceSession, profile: np.ndarray, candidates: np.ndarray, tower_scores: np.ndarray,
    catalog: RankCatalog,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The candidates in the ranker's order, with its scores (offline evaluation; serve.py times the parts)."""
    if len(candidates) == 0:
        return candidates, tower_scores
    scores = session.run(None, {"features": rank_features(profile, candidates, tower_scores, catalog)})[0]
    order = np.argsort(-scores, kind="stable")
    return candidates[order], scores[order]


def run_rank(
    towers: TwoTower, feed: Feed, features: RecsysFeatures, root: Path, run_id: str, max_users: int,
    epochs: int, seed: int,
) -> dict:  # fmt: skip
    """The whole step: catalog snapshot, train, export, meta (with the towers' run id)."""
    index = faiss.read_index(str(root / layout.SERVING_INDEX))
    seen_videos = np.load(root / layout.SEEN_VIDEOS)
    catalog = RankCatalog.from_feed(feed)
    model, figures = train_ranker(
        towers, feed, features, index, seen_videos, catalog, max_users, epochs, seed
    )
    (root / layout.RANK_DIR).mkdir(parents=True, exist_ok=True)
    catalog.save(root / layout.RANK_CATALOG)
    parity = export_ranker(model, root / layout.RANKER_ONNX)
    if parity > 1e-4:
        raise RuntimeError(f"ONNX ranker differs from PyTorch by {parity:.2e} (> 1e-4)")
    meta = {"run_id": run_id, "features": list(RANK_FEATURES), "candidates": CANDIDATES,
            "creator_cap": CREATOR_CAP, "onnx_max_abs_diff": parity, **figures}  # fmt: skip
    with atomic_write(root / layout.RANK_META, "w") as f:
        f.write(json.dumps(meta, indent=2))
    return meta
