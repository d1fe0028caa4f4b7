"""Offline metrics more than one system reports: ranking (recall, nDCG, MRR) and classification (log loss,
NE, calibration, AUCs, recall at a fixed FPR). Each is tested against a reference implementation."""

from infra.metrics.classification import (
    EPS,
    calibration_ratio,
    grouped_auc,
    log_loss,
    normalized_entropy,
    pr_auc,
    recall_at_fpr,
    roc_auc,
)
from infra.metrics.ranking import (
    mean_ndcg_at_k,
    mean_recall_at_k,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)

__all__ = [
    "recall_at_k", "ndcg_at_k", "reciprocal_rank_at_k", "mrr_at_k", "mean_recall_at_k", "mean_ndcg_at_k",
    "EPS", "log_loss", "normalized_entropy", "calibration_ratio", "roc_auc", "pr_auc", "recall_at_fpr",
    "grouped_auc",
]  # fmt: skip
