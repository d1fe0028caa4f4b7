"""Checks for recall@k and nDCG@k: equal to infra.metrics.ranking on random queries and to sklearn's ndcg_score;
the cut at k, duplicates, empty relevant sets, the ideal DCG's length. Wrong values are compared with the usual
mistakes (precision for recall, the discount off by one, the ideal over every relevant item) to name them."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
from sklearn.metrics import ndcg_score

from infra.metrics.ranking import ndcg_at_k, recall_at_k
from mlsd.exercises.harness import Check, Failed

NAMES = ("recall_at_k", "ndcg_at_k")
TOL = 1e-12


def queries(n: int = 50) -> list[tuple[list[int], set[int], int]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        ranked = rng.permutation(40)[:20].tolist()
        relevant = set(rng.choice(40, size=int(rng.integers(1, 12)), replace=False).tolist())
        out.append((ranked, relevant, int(rng.integers(1, 21))))
    return out


def dcg(ranked: list[int], relevant: set[int], k: int, offset: int = 1) -> float:
    return sum(1 / math.log2(r + offset) for r, d in enumerate(ranked[:k], start=1) if d in relevant)


def number(got: object, what: str) -> float:
    try:
        return float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Failed(f"{what} returned {type(got).__name__}, expected a float") from None


def first_mismatch(m_fn, ref_fn, name: str, mistakes) -> None:
    for ranked, relevant, k in queries():
        got = number(m_fn(list(ranked), set(relevant), k), name)
        want = ref_fn(ranked, relevant, k)
        if abs(got - want) > TOL:
            detail = f"{name}(k={k}, |relevant|={len(relevant)}) = {got:.6f}, expected {want:.6f}"
            for hint, wrong in mistakes:
                if abs(got - wrong(ranked, relevant, k)) <= TOL:
                    raise Failed(detail, hint)
            raise Failed(detail)


def recall_matches(m: ModuleType) -> None:
    mistakes = [
        ("recall divides by the number of relevant items, not by k (that is precision@k)",
         lambda r, rel, k: len(set(r[:k]) & rel) / k),
        ("recall@k divides by |relevant|, not min(|relevant|, k)",
         lambda r, rel, k: len(set(r[:k]) & rel) / min(len(rel), k)),
        ("only the first k items count: ranked[:k]", lambda r, rel, k: len(set(r) & rel) / len(rel)),
    ]  # fmt: skip
    first_mismatch(m.recall_at_k, recall_at_k, "recall_at_k", mistakes)


def ndcg_matches(m: ModuleType) -> None:
    def ideal_all(r, rel, k):
        return dcg(r, rel, k) / sum(1 / math.log2(i + 1) for i in range(1, len(rel) + 1))

    def off_by_one(r, rel, k):
        ideal = sum(1 / math.log2(i + 2) for i in range(1, min(len(rel), k) + 1))
        return dcg(r, rel, k, offset=2) / ideal

    def unnormalised(r, rel, k):
        return dcg(r, rel, k)

    mistakes = [
        ("the ideal DCG has min(|relevant|, k) hits at the top, not |relevant|", ideal_all),
        ("rank 1 gets discount 1 / log2(2) = 1: use 1 / log2(rank + 1) with ranks from 1", off_by_one),
        ("divide DCG by the ideal DCG (the same sum for a perfect top k)", unnormalised),
    ]
    first_mismatch(m.ndcg_at_k, ndcg_at_k, "ndcg_at_k", mistakes)


def ndcg_matches_sklearn(m: ModuleType) -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        items = rng.permutation(15).tolist()  # every candidate ranked, so sklearn's ideal is ours
        relevant = set(rng.choice(15, size=int(rng.integers(1, 8)), replace=False).tolist())
        k = int(rng.integers(1, 16))
        truth = np.array([[1.0 if d in relevant else 0.0 for d in items]])
        scores = np.array([np.arange(len(items), 0, -1, dtype=float)])
        want = float(ndcg_score(truth, scores, k=k))
        got = number(m.ndcg_at_k(items, relevant, k), "ndcg_at_k")
        if abs(got - want) > 1e-9:
            raise Failed(
                f"k={k}, |relevant|={len(relevant)}: {got:.6f}, sklearn.metrics.ndcg_score {want:.6f}"
            )


def perfect_is_one(m: ModuleType) -> None:
    relevant = set(range(10))
    ranked = list(range(20))
    for k in (1, 5, 10, 15):
        got = number(m.ndcg_at_k(ranked, relevant, k), "ndcg_at_k")
        if abs(got - 1.0) > 1e-12:
            raise Failed(f"10 relevant items ranked first, k={k}: nDCG {got:.6f}, expected 1.0")


def duplicates_once(m: ModuleType) -> None:
    got = number(m.recall_at_k([1, 1, 1, 2], {1, 3}, 3), "recall_at_k")
    if abs(got - 0.5) > TOL:
        raise Failed(f"ranked [1, 1, 1, 2], relevant {{1, 3}}, k=3: recall {got}, expected 0.5")


def empty_relevant(m: ModuleType) -> None:
    for name in NAMES:
        got = number(getattr(m, name)([1, 2, 3], set(), 2), name)
        if got != 0.0:
            raise Failed(f"{name} with no relevant item: {got}, expected 0.0")


CHECKS = [
    Check("recall_at_k equals infra.metrics.ranking on 50 random queries", recall_matches,
          "recall@k = len(set(ranked[:k]) & set(relevant)) / len(relevant)"),
    Check("ndcg_at_k equals infra.metrics.ranking on 50 random queries", ndcg_matches,
          "DCG = sum of 1 / log2(rank + 1) over hits in the top k; ideal = the same for min(|relevant|, k) hits"),
    Check("ndcg_at_k equals sklearn.metrics.ndcg_score", ndcg_matches_sklearn,
          "DCG = sum of 1 / log2(rank + 1) over hits in the top k; ideal = the same for min(|relevant|, k) hits"),
    Check("a perfect top k scores nDCG 1.0, even with more relevant items than k", perfect_is_one,
          "the ideal DCG has min(|relevant|, k) hits at the top, not |relevant|"),
    Check("an item repeated in the ranking counts once", duplicates_once,
          "count each relevant item once: intersect sets, not a count over the list"),
    Check("a query with no relevant item scores 0.0 on both", empty_relevant,
          "return 0.0 when relevant is empty instead of dividing by zero"),
]  # fmt: skip
