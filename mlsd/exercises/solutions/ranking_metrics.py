"""Reference answer: the project's own metrics (infra/metrics/ranking.py, checked there against trec_eval)."""

from infra.metrics.ranking import ndcg_at_k, recall_at_k

__all__ = ["ndcg_at_k", "recall_at_k"]
