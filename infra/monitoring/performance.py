"""Model-quality monitors: with delayed labels (AUC, log loss, calibration) and without them (CBPE).

CBPE (confidence-based performance estimation, as in NannyML): if the model is calibrated, each
prediction p_i is the click probability, so the expected AUC of a window can be computed from the
predictions alone. It catches covariate shift that moves rows to where the model is less sure; it
cannot catch concept drift (the model's p are then wrong, and CBPE trusts them).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def expected_auc(p: np.ndarray) -> float:
    """E[AUC] if labels were drawn as Bernoulli(p): sum_{i != j} p_i (1 - p_j) [p_i > p_j] / E[#pos x #neg]."""
    p = np.sort(np.asarray(p, dtype=np.float64))
    neg_below = np.cumsum(1 - p) - (1 - p)  # sum of (1 - p_j) over j ranked below i
    numerator = float(np.sum(p * neg_below))
    denominator = float(p.sum() * (1 - p).sum() - np.sum(p * (1 - p)))
    return numerator / denominator if denominator > 0 else float("nan")


def expected_log_loss(p: np.ndarray) -> float:
    """E[log loss] under the model's own probabilities (its entropy)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(p * np.log(p) + (1 - p) * np.log(1 - p)))


def labelled_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, log loss and calibration (mean predicted / observed) once the labels have arrived."""
    y = np.asarray(y)
    pc = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return {
        "auc": float(roc_auc_score(y, pc)) if 0 < y.sum() < y.size else float("nan"),
        "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))),
        "calibration": float(pc.mean() / max(y.mean(), 1e-7)),
    }
