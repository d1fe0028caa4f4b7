"""Binary-relevance ranking metrics for one query, and their means over queries.

One query: `ranked` is the result list best first (strings or ints), `relevant` the set of right answers.
A query with no relevant item scores 0.0 on every metric (trec_eval leaves such queries out instead).

The per-query functions are the ones systems/rag_search/evaluate.py used; `mean_recall_at_k` and
`mean_ndcg_at_k` are the vectorised ones systems/recsys_two_tower/evaluate.py used, kept op for op so that
the reported numbers do not move. Both are checked against trec_eval in tests/infra/test_metrics.py.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence

import numpy as np


def recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Recall@k = |top-k ∩ relevant| / |relevant|."""
    relevant = set(relevant)
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def reciprocal_rank_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """RR@k = 1 / rank of the first relevant item in the top k (0.0 when none is)."""
    relevant = set(relevant)
    return next((1.0 / r for r, d in enumerate(ranked[:k], start=1) if d in relevant), 0.0)


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """nDCG@k = sum over relevant hits of 1/log2(rank+1), over the same sum for ranks 1..min(|relevant|, k)."""
    relevant = set(relevant)
    dcg = sum(1.0 / math.log2(r + 1) for r, d in enumerate(ranked[:k], start=1) if d in relevant)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def mrr_at_k(
    rankings: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]], k: int
) -> float:
    """MRR@k = mean over queries of reciprocal_rank_at_k."""
    return float(np.mean([reciprocal_rank_at_k(r, t, k) for r, t in zip(rankings, relevant, strict=True)]))


def mean_recall_at_k(recs: np.ndarray, targets: list[np.ndarray], k: int) -> float:
    """Mean over users of |top-k ∩ target| / |target|; recs (U, K) item ids, targets[u] unique item ids."""
    return float(
        np.mean(
            [np.isin(t, r[:k]).sum() / len(t) if len(t) else 0.0 for r, t in zip(recs, targets, strict=True)]
        )
    )


def mean_ndcg_at_k(recs: np.ndarray, targets: list[np.ndarray], k: int) -> float:
    """Mean over users of binary nDCG@k: DCG of the hits over the DCG of a perfect top-k."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for r, t in zip(recs, targets, strict=True):
        if not len(t):
            scores.append(0.0)
            continue
        gains = np.isin(r[:k], t).astype(np.float64)
        ideal = disc[: min(k, len(t))].sum()
        scores.append(float((gains * disc[: len(gains)]).sum() / ideal))
    return float(np.mean(scores))
