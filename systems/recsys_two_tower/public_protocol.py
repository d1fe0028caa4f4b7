"""The `eval` step on real data (MovieLens): the public benchmark tables' metrics beside two baselines.

The metrics are those of Microsoft's recommenders benchmark (python_evaluation): per user, the top-10 items
not rated in training against the user's test items — precision@10 (hits / 10), recall@10 (hits / |test|),
nDCG@10 (binary gains) and MAP@10 (the mean over hits of precision at the hit's rank, over |test|). The
baselines are computed in the same run, on the same users and the same split: most-popular (training counts)
and item-item kNN (cosine between items' training raters; a user's score for an item is the sum of its
similarities to the items the user rated; ties, and a user with no training ratings, fall back to popularity, the
usual fallback, which matters on the temporal split where most test users arrive after the split). No oracle:
real data has no generating model.
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp

from infra.console import markdown_table, print_rows
from infra.metrics import mean_ndcg_at_k, mean_recall_at_k
from systems.recsys_two_tower import layout
from systems.recsys_two_tower.data import Feed, holdout_users
from systems.recsys_two_tower.evaluate import drop_seen, search_excluding
from systems.recsys_two_tower.features.repo import RecsysFeatures
from systems.recsys_two_tower.index import exact_index, user_vectors
from systems.recsys_two_tower.model import TwoTower

K = 10
KNN_NEIGHBOURS = 50


def mean_precision_at_k(recs: np.ndarray, targets: list[np.ndarray], k: int) -> float:
    """Mean over users of |top-k ∩ target| / k."""
    return float(np.mean([np.isin(r[:k], t).sum() / k for r, t in zip(recs, targets, strict=True)]))


def mean_average_precision_at_k(recs: np.ndarray, targets: list[np.ndarray], k: int) -> float:
    """MAP@k as the recommenders library computes it: sum of precision@rank at each hit, over |target|."""
    scores = []
    for r, t in zip(recs, targets, strict=True):
        hits = np.isin(r[:k], t)
        precision = np.cumsum(hits) / np.arange(1, k + 1)
        scores.append(float((precision * hits).sum() / len(t)) if len(t) else 0.0)
    return float(np.mean(scores))


def item_knn_recs(
    train_users: np.ndarray, train_items: np.ndarray, n_users: int, n_items: int, users: np.ndarray,
    seens: list[np.ndarray], k: int, neighbours: int = KNN_NEIGHBOURS,
) -> np.ndarray:  # fmt: skip
    """Item-item kNN: cosine over binary rater vectors, each item keeps its `neighbours` most similar.

    Ties break by training popularity, so a user with no training ratings (a cold start: every score 0) gets
    most-popular rather than an arbitrary list; the tie-break (< 1e-6) is below any real score difference."""
    x = sp.csr_matrix((np.ones(len(train_users), np.float32), (train_users, train_items)), (n_users, n_items))
    x.data[:] = 1.0  # a re-rating counts once
    norms = np.sqrt(np.asarray(x.multiply(x).sum(0))).ravel().clip(1e-9)
    xn = x.multiply(1 / norms[None, :]).tocsc()
    sim = (
        xn.T @ xn
    ).toarray()  # (I, I); MovieLens catalogs (1.7k-60k items) fit, ml-25m at 60k is ~14 GB: use
    np.fill_diagonal(sim, 0.0)  # ...a sample there (--data on ml-25m is not a target of this step)
    if neighbours < n_items:
        cut = np.partition(sim, -neighbours, axis=1)[:, -neighbours][:, None]
        sim[sim < cut] = 0.0
    counts = np.asarray(x.sum(0)).ravel()  # (I,) training raters per item
    tie_break = 1e-6 * counts / max(counts.max(), 1.0)
    scores = np.asarray(x[users] @ sim) + tie_break[None, :]  # (U, I)
    out = []
    for row, s in zip(scores, seens, strict=True):
        row[s] = -np.inf
        top = np.argpartition(-row, k)[:k]
        out.append(top[np.argsort(-row[top])])
    return np.stack(out)


def baseline_recs(feed: Feed, users: np.ndarray, seens: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The two baselines' top-K for `users`: most-popular (training counts) and item-item kNN."""
    train = feed.events[feed.events["ts"] < feed.split_ts]
    popular = train["video_id"].value_counts().index.to_numpy()
    return {
        "most-popular": np.stack([drop_seen(popular[: K + len(s)], s, K) for s in seens]),
        f"item-item kNN ({KNN_NEIGHBOURS} neighbours)": item_knn_recs(
            train["user_id"].to_numpy(), train["video_id"].to_numpy(), feed.config.n_users,
            feed.config.n_videos, users, seens, K,
        ),
    }  # fmt: skip


def ranking_table(recs: np.ndarray, targets: list[np.ndarray]) -> dict[str, float]:
    """precision, recall, nDCG and MAP at K of one model's top-K lists."""
    return {
        "precision@10": mean_precision_at_k(recs, targets, K),
        "recall@10": mean_recall_at_k(recs, targets, K),
        "ndcg@10": mean_ndcg_at_k(recs, targets, K),
        "map@10": mean_average_precision_at_k(recs, targets, K),
    }


def run_public_eval(
    model: TwoTower, feed: Feed, features: RecsysFeatures, root: Path, max_users: int, seed: int
) -> dict:
    """Precision/recall/nDCG/MAP@10 for most-popular, item-item kNN and the two-tower (exact and ANN)."""
    users, targets, seens = holdout_users(feed, max_users, seed)
    recs = baseline_recs(feed, users, seens)
    seen_videos = np.load(root / layout.SEEN_VIDEOS)
    queries = user_vectors(model, features, users, feed.split_ts - 1, seen_videos)
    emb = np.load(root / layout.CATALOG_EMB)
    recs["two-tower exact (Flat)"] = search_excluding(exact_index(emb), queries, seens, K)
    serving = faiss.read_index(str(root / layout.SERVING_INDEX))
    recs["two-tower ANN (serving index)"] = search_excluding(serving, queries, seens, K)
    table = {name: ranking_table(r, targets) for name, r in recs.items()}
    source = json.loads((root / layout.SOURCE).read_text())
    result = {"users": len(users), "source": source, "table": table}
    (root / layout.EVAL).write_text(json.dumps(result, indent=2))
    return result


PUBLIC_COLUMNS = ("model", "precision@10", "recall@10", "ndcg@10", "map@10")


def _public_title(result: dict) -> str:
    src = result["source"]
    return f"{src['kind']} ({src['protocol']} split): top-10 of items not rated in training"


def print_public_eval(result: dict) -> None:
    """The public tables' metrics on the dataset's test split, the baselines beside."""
    print_rows(f"{_public_title(result)}, {result['users']} users", PUBLIC_COLUMNS,
               [(name, *row.values()) for name, row in result["table"].items()])  # fmt: skip


def public_markdown(result: dict) -> str:
    """The same table for a bench report."""
    return markdown_table(f"Offline: {_public_title(result)}", PUBLIC_COLUMNS,
                          [(name, *row.values()) for name, row in result["table"].items()])  # fmt: skip
