"""Drift and data-quality statistics shared by every system (PSI, KS, and the distances and monitors beside them)."""

from infra.monitoring.distances import (
    THRESHOLDS,
    categorical_psi,
    chi_square_categorical,
    jensen_shannon,
    wasserstein_normalized,
)
from infra.monitoring.drift import ks_statistic, psi, quantile_bins
from infra.monitoring.performance import expected_auc, expected_log_loss, labelled_metrics

__all__ = [
    "psi", "ks_statistic", "quantile_bins", "THRESHOLDS", "categorical_psi", "chi_square_categorical",
    "jensen_shannon", "wasserstein_normalized", "expected_auc", "expected_log_loss", "labelled_metrics",
]  # fmt: skip
