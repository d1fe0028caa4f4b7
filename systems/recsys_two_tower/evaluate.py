"""The `eval` step: Recall@K and NDCG@K on the future split for random, most-popular, two-tower exact,
two-tower ANN, the ANN's candidates in the ranker's order (and after the policy layer), and the oracle
(ranking by the generator's true P(video | user): the ceiling)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import faiss
import numpy as np

from infra.console import markdown_table, print_rows
from infra.metrics import mean_ndcg_at_k, mean_recall_at_k
from infra.serving.onnx import make_session
from systems.recsys_two_tower import layout
from systems.recsys_two_tower.data import DAY, Feed, holdout_users
from systems.recsys_two_tower.features.repo import RecsysFeatures
from systems.recsys_two_tower.index import ann_setting, exact_index, maybe_gpu, user_vectors
from systems.recsys_two_tower.model import TwoTower
from systems.recsys_two_tower.rank import (
    CANDIDATES,
    CREATOR_CAP,
    RankCatalog,
    candidates_for,
    policy,
    rank_candidates,
    user_profile,
)

KS = (10, 100)
RANKED = f"ANN top {CANDIDATES} -> ranker"
POLICY = f"ANN top {CANDIDATES} -> ranker -> policy (<= {CREATOR_CAP} per creator)"


def drop_seen(candidates: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """The first k candidates the user has not watched, padded with -1."""
    keep = candidates[(candidates >= 0) & ~np.isin(candidates, seen)]
    return np.pad(keep[:k], (0, max(0, k - len(keep[:k]))), constant_values=-1)


def search_excluding(index: faiss.Index, queries: np.ndarray, seens: list[np.ndarray], k: int) -> np.ndarray:
    margin = max(len(s) for s in seens) if seens else 0
    _, ids = index.search(queries, min(index.ntotal, k + margin))
    return np.stack([drop_seen(row, s, k) for row, s in zip(ids, seens, strict=True)])


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


def ranked_recs(
    model: TwoTower, feed: Feed, features: RecsysFeatures, root: Path, index: faiss.Index, users: np.ndarray,
    seens: list[np.ndarray], k: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The serving index's first CANDIDATES unseen videos in the ranker's order, then after the policy layer."""
    catalog = RankCatalog.load(root / layout.RANK_CATALOG)
    session = make_session(root / layout.RANKER_ONNX, threads=1)
    seen_videos = np.load(root / layout.SEEN_VIDEOS)
    frame, cands, scores = candidates_for(
        model, features, index, users, feed.split_ts - 1, seen_videos, seens
    )
    cols = {c: frame[c].tolist() for c in frame.columns}
    ranked, capped = [], []
    for i, (c, s) in enumerate(zip(cands, scores, strict=True)):
        order, rscores = rank_candidates(session, user_profile(cols, catalog, i), c, s, catalog)
        ranked.append(np.pad(order[:k], (0, k - len(order[:k])), constant_values=-1))
        kept, _ = policy(order, rscores, np.empty(0, np.int64), catalog.creator[order], k)
        capped.append(np.pad(kept, (0, k - len(kept)), constant_values=-1))
    return np.stack(ranked), np.stack(capped)


def run_eval(
    model: TwoTower, feed: Feed, features: RecsysFeatures, root: Path, max_users: int = 1000, seed: int = 0
) -> dict:
    """The offline quality table (also written to eval.json)."""
    k = max(KS)
    users, targets, seens = holdout_users(feed, max_users, seed)
    seen_videos = np.load(root / layout.SEEN_VIDEOS)
    queries = user_vectors(model, features, users, feed.split_ts - 1, seen_videos)
    train = feed.events[feed.events["ts"] < feed.split_ts]
    last_week = train[train["ts"] >= feed.split_ts - 7 * DAY]["video_id"].value_counts().index.to_numpy()
    rng = np.random.default_rng(seed)
    recs: dict[str, np.ndarray] = {
        "random": np.stack(
            [drop_seen(rng.choice(feed.config.n_videos, k + len(s), replace=False), s, k) for s in seens]
        ),
        "most-popular (last 7 days)": np.stack([drop_seen(last_week[: k + len(s)], s, k) for s in seens]),
    }
    emb = np.load(root / layout.CATALOG_EMB)
    t0 = time.perf_counter()
    recs["two-tower exact (Flat)"] = search_excluding(maybe_gpu(exact_index(emb)), queries, seens, k)
    exact_ms = (time.perf_counter() - t0) * 1000 / len(users)
    serving = maybe_gpu(faiss.read_index(str(root / layout.SERVING_INDEX)))
    t0 = time.perf_counter()
    recs["two-tower ANN (serving index)"] = search_excluding(serving, queries, seens, k)
    ann_ms = (time.perf_counter() - t0) * 1000 / len(users)
    recs[RANKED], recs[POLICY] = ranked_recs(model, feed, features, root, serving, users, seens, k)
    recs["oracle (true preferences)"] = oracle_recs(feed, users, seens, k)
    table = {
        name: {
            f"{m}@{kk}": fn(r, targets, kk)
            for kk in KS
            for m, fn in (("recall", mean_recall_at_k), ("ndcg", mean_ndcg_at_k))
        }
        for name, r in recs.items()
    }
    result = {"users": len(users), "table": table, "exact_ms_per_user_batched": exact_ms,
              "ann_ms_per_user_batched": ann_ms}  # fmt: skip
    (root / layout.EVAL).write_text(json.dumps(result, indent=2))
    return result


def report_markdown(scale: str, evaluation: dict, sweep: dict, cross: dict) -> str:
    """The offline tables the bench report carries beside its latency tables (DESIGN.md quotes them)."""
    cols = ("recall@10", "ndcg@10", "recall@100", "ndcg@100")
    t = evaluation["table"]
    parts = [markdown_table(
        f"Offline quality ({scale} scale: {sweep['n_videos']:,} videos; {evaluation['users']} test users, "
        "future split, new videos only) — `mlsd recsys eval`",
        ("model", *cols), [(name, *(row[c] for c in cols)) for name, row in t.items()],
    )]  # fmt: skip
    pop = t["most-popular (last 7 days)"]["recall@100"]
    tt = t["two-tower ANN (serving index)"]["recall@100"]
    ann = sweep["chosen"]
    # an index step from before 2026-12-08 recorded the batch-1 mean at the machine's threads, not the p50
    timing = (f"batch-1 p50 {ann['p50_ms']:.3f} ms per query on one thread" if "p50_ms" in ann
              else f"{ann['ms_per_query_batch1']:.3f} ms per query (batch-1 mean)")  # fmt: skip
    parts.append(
        f"Two-tower ANN recall@100 / most-popular: x{tt / pop:.2f} (target >= 3).\n"
        f"Serving index: {ann['index']} {ann_setting(ann)}, recall@100 vs exact {ann['recall_at_100']:.3f} "
        f"(target >= 0.95), {timing} — `mlsd recsys index`.\n"
    )
    cross_cols = ("recall@10", "ndcg@10", "recall@100", "ms_per_request")
    parts.append(markdown_table(
        f"Two-tower vs cross model as the first stage ({cross['users']} users) — `mlsd recsys cross`",
        ("first stage", "recall@10", "ndcg@10", "recall@100", "ms / request"),
        [(name, *(row[c] for c in cross_cols)) for name, row in cross["table"].items()],
    ))  # fmt: skip
    return "\n".join(parts)


def print_eval(result: dict) -> None:
    """The offline quality table of the eval step."""
    cols = list(next(iter(result["table"].values())))
    print_rows(f"offline quality on the future split ({result['users']} users; new videos only)",
               ("model", *cols), [(name, *row.values()) for name, row in result["table"].items()])  # fmt: skip
