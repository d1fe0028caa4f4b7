"""Drift and data-quality statistics shared by every system (PSI, KS)."""

from infra.monitoring.drift import ks_statistic, psi, quantile_bins

__all__ = ["psi", "ks_statistic", "quantile_bins"]
