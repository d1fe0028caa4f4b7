"""Binary-classification metrics: probability quality (log loss, NE, calibration) and ranking quality (AUCs,
recall at a fixed false-positive rate).

NE = log loss / entropy of the base rate (He et al. 2014, "Practical lessons from predicting clicks on
ads at Facebook"): 1.0 is no better than always predicting the average rate; lower is better.
Calibration = mean predicted / observed rate: 1.0 is calibrated, 1.10 over-predicts positives by 10%.

Moved from systems/ctr/evaluate.py and systems/fraud_edge/train.py unchanged; checked against scikit-learn
in tests/infra/test_metrics.py.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] so one confident mistake costs ~16 nats, not inf


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Log loss = -mean(y ln p + (1 - y) ln(1 - p)), p clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def normalized_entropy(y: np.ndarray, p: np.ndarray) -> float:
    """NE = log loss / H(base rate), H(b) = -(b ln b + (1 - b) ln(1 - b)), b = mean(y) clipped like p."""
    base = float(np.clip(np.mean(y), EPS, 1 - EPS))
    entropy = -(base * np.log(base) + (1 - base) * np.log(1 - base))
    return log_loss(y, p) / entropy


def calibration_ratio(y: np.ndarray, p: np.ndarray) -> float:
    """Calibration = mean(p) / mean(y) (mean(y) floored at EPS)."""
    return float(np.mean(p) / max(np.mean(y), EPS))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC = P(score of a random positive > score of a random negative), ties counted half."""
    return float(roc_auc_score(y, p))


def pr_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision = sum_n (R_n - R_{n-1}) P_n over thresholds (scikit-learn's step-wise PR-AUC)."""
    return float(average_precision_score(y, scores))


def recall_at_fpr(y: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    """Recall at FPR = share of positives scored above the (1 - fpr) quantile of the negatives' scores.

    Quantile convention: the threshold is `np.quantile(negatives, 1 - fpr)` (linear interpolation) and a row
    is flagged when strictly above it. Without ties that flags ceil((n_neg - 1) * fpr) negatives: the realised
    FPR is `fpr` up to one negative. When n_neg * fpr is a whole number it is exactly the best recall with
    FPR <= fpr, ties or not (a block of scores tied at the threshold stays unflagged). tests/infra/test_metrics.py
    checks both against the ROC curve.
    """
    y, scores = np.asarray(y), np.asarray(scores)
    legit = scores[y == 0]
    threshold = np.quantile(legit, 1.0 - fpr)
    return float(np.mean(scores[y == 1] > threshold))


def grouped_auc(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> float:
    """GAUC = sum_g n_g AUC_g / sum_g n_g over groups (e.g. a request or a position) that have both labels."""
    total, weight = 0.0, 0
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    g, y, p = groups[order], np.asarray(y)[order], np.asarray(p)[order]
    bounds = np.flatnonzero(np.diff(g)) + 1
    for ys, ps in zip(np.split(y, bounds), np.split(p, bounds), strict=True):
        if 0 < ys.sum() < ys.size:
            total += roc_auc_score(ys, ps) * ys.size
            weight += ys.size
    return total / weight if weight else float("nan")
