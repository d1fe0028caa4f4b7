"""The `eval` step: Recall@K and NDCG@K on the future split for random, most-popular, two-tower exact,
two-tower ANN and the oracle (ranking by the generator's true P(video | user): the ceiling)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch

from systems.recsys_two_tower.data import DAY, Feed
from systems.recsys_two_tower.features.definitions import USER_COLS
from systems.recsys_two_tower.features.transform import user_inputs
from systems.recsys_two_tower.model import TwoTower

KS = (10, 100)


def recall_at_k(recs: np.ndarray, targets: list[np.ndarray], k: int) -> float:
    """Mean over users of |top-k ∩ target| / |target|."""
    return float(np.mean([np.isin(t, r[:k]).sum() / len(t) for r, t in zip(recs, targets, strict=True)]))


def ndcg_at_k(recs: np.ndarray, targets: list[np.ndarray], k: int) -> float:
    """Binary-relevance NDCG@k: DCG of the hits over the DCG of a perfect top-k."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for r, t in zip(recs, targets, strict=True):
        gains = np.isin(r[:k], t).astype(np.float64)
        ideal = disc[: min(k, len(t))].sum()
        scores.append(float((gains * disc[: len(gains)]).sum() / ideal))
    return float(np.mean(scores))


def eval_users(
    feed: Feed, max_users: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Users with at least one new (unwatched in training) video in the test period, their targets and
    their training watches (excluded from every ranking)."""
    train = feed.events[feed.events["ts"] < feed.split_ts]
    test = feed.events[feed.events["ts"] >= feed.split_ts]
    seen = train.groupby("user_id")["video_id"].apply(lambda s: np.unique(s.to_numpy()))
    target = test.groupby("user_id")["video_id"].apply(lambda s: np.unique(s.to_numpy()))
    users, targets, seens = [], [], []
    for uid, t in target.items():
        s = seen.get(uid, np.empty(0, np.int64))
        new = np.setdiff1d(t, s)
        if len(new):
            users.append(uid)
            targets.append(new)
            seens.append(s)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(users), size=min(max_users, len(users)), replace=False))
    return np.asarray(users)[pick], [targets[i] for i in pick], [seens[i] for i in pick]


def _exclude(candidates: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    keep = candidates[(candidates >= 0) & ~np.isin(candidates, seen)]
    return np.pad(keep[:k], (0, max(0, k - len(keep[:k]))), constant_values=-1)


def user_vectors(
    model: TwoTower, repo, users: np.ndarray, as_of_ts: int, seen_videos: np.ndarray
) -> np.ndarray:  # noqa: ANN001
    """User-tower embeddings from features as of as_of_ts (point-in-time: nothing from the test period)."""
    entity_df = pd.DataFrame(
        {"user_id": users, "event_timestamp": pd.Timestamp(as_of_ts, unit="s", tz="UTC")}
    )
    frame = repo.historical(entity_df, repo.objects["user_serving"])
    inputs = user_inputs({c: frame[c] for c in ["user_id", *USER_COLS]}, model.cfg, seen_videos)
    with torch.no_grad():
        return model.user(*[torch.from_numpy(a) for a in inputs]).numpy()


def search_excluding(index: faiss.Index, queries: np.ndarray, seens: list[np.ndarray], k: int) -> np.ndarray:
    margin = max(len(s) for s in seens) if seens else 0
    _, ids = index.search(queries, min(index.ntotal, k + margin))
    return np.stack([_exclude(row, s, k) for row, s in zip(ids, seens, strict=True)])


def oracle_recs(
    feed: Feed, users: np.ndarray, seens: list[np.ndarray], k: int, chunk: int = 32
) -> np.ndarray:
    out = []
    for start in range(0, len(users), chunk):
        scores = feed.true_scores(users[start : start + chunk])  # (chunk, n_videos)
        for row, s in zip(scores, seens[start : start + chunk], strict=True):
            row[s] = -1.0
            top = np.argpartition(-row, k)[:k]
            out.append(top[np.argsort(-row[top])])
    return np.stack(out)


def run_eval(
    model: TwoTower,
    feed: Feed,
    repo,
    workdir: Path,
    max_users: int = 1000,
    seed: int = 0,  # noqa: ANN001
) -> dict:
    """The offline quality table; also returns the user vectors it used (queries for the ANN sweep)."""
    k = max(KS)
    users, targets, seens = eval_users(feed, max_users, seed)
    seen_videos = np.load(workdir / "model" / "seen_videos.npy")
    queries = user_vectors(model, repo, users, feed.split_ts - 1, seen_videos)
    train = feed.events[feed.events["ts"] < feed.split_ts]
    last_week = train[train["ts"] >= feed.split_ts - 7 * DAY]["video_id"].value_counts().index.to_numpy()
    rng = np.random.default_rng(seed)
    recs: dict[str, np.ndarray] = {
        "random": np.stack(
            [_exclude(rng.choice(feed.config.n_videos, k + len(s), replace=False), s, k) for s in seens]
        ),
        "most-popular (last 7 days)": np.stack([_exclude(last_week[: k + len(s)], s, k) for s in seens]),
    }
    emb = np.load(workdir / "index" / "catalog_emb.npy")
    t0 = time.perf_counter()
    recs["two-tower exact (Flat)"] = search_excluding(_flat(emb), queries, seens, k)
    exact_ms = (time.perf_counter() - t0) * 1000 / len(users)
    serving = _read_serving(workdir)
    t0 = time.perf_counter()
    recs["two-tower ANN (serving index)"] = search_excluding(serving, queries, seens, k)
    ann_ms = (time.perf_counter() - t0) * 1000 / len(users)
    recs["oracle (true preferences)"] = oracle_recs(feed, users, seens, k)
    table = {
        name: {
            f"{m}@{kk}": fn(r, targets, kk)
            for kk in KS
            for m, fn in (("recall", recall_at_k), ("ndcg", ndcg_at_k))
        }
        for name, r in recs.items()
    }
    result = {"users": len(users), "table": table, "exact_ms_per_user_batched": exact_ms,
              "ann_ms_per_user_batched": ann_ms}  # fmt: skip
    (workdir / "eval.json").write_text(json.dumps(result, indent=2))
    return {**result, "queries": queries}


def _flat(emb: np.ndarray) -> faiss.Index:
    from systems.recsys_two_tower.index import exact_index, maybe_gpu

    return maybe_gpu(exact_index(emb))


def _read_serving(workdir: Path) -> faiss.Index:
    from systems.recsys_two_tower.index import maybe_gpu

    return maybe_gpu(faiss.read_index(str(workdir / "index" / "serving.faiss")))
