"""Exercise: recall@k and nDCG@k for one query, with binary relevance.

`ranked` is the result list, best first; `relevant` the set of right answers. recall@k = |top-k ∩ relevant| /
|relevant|. nDCG@k = DCG@k / ideal DCG@k, where DCG sums 1 / log2(rank + 1) over the relevant items in the top k
(ranks from 1) and the ideal puts min(|relevant|, k) relevant items at the top. A query with no relevant item
scores 0.0 on both.

Check your answer: `mlsd exercise check ranking-metrics`.
"""

from __future__ import annotations

import math  # noqa: F401  (for your answer)
from collections.abc import Collection, Hashable, Sequence


def recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    raise NotImplementedError


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    raise NotImplementedError
