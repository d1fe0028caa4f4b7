"""Population stability index and Kolmogorov-Smirnov distance between a reference and a live sample."""

from __future__ import annotations

import numpy as np


def quantile_bins(reference: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (so each bin holds ~1/n_bins of the reference)."""
    edges = np.quantile(np.asarray(reference, dtype=np.float64), np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.unique(edges)


def psi(reference: np.ndarray, live: np.ndarray, n_bins: int = 10, eps: float = 1e-4) -> float:
    """PSI = sum (live% - ref%) * ln(live% / ref%) over reference-quantile bins.

    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
    """
    reference = np.asarray(reference, dtype=np.float64)
    live = np.asarray(live, dtype=np.float64)
    if reference.size == 0 or live.size == 0:
        raise ValueError("psi needs non-empty reference and live samples")
    edges = quantile_bins(reference, n_bins)
    ref_frac = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1)
    live_frac = np.bincount(np.searchsorted(edges, live, side="right"), minlength=edges.size + 1)
    ref_p = np.clip(ref_frac / reference.size, eps, None)
    live_p = np.clip(live_frac / live.size, eps, None)
    return float(np.sum((live_p - ref_p) * np.log(live_p / ref_p)))


def ks_statistic(reference: np.ndarray, live: np.ndarray) -> float:
    """Largest gap between the two empirical CDFs (0 = same distribution, 1 = disjoint)."""
    a = np.sort(np.asarray(reference, dtype=np.float64))
    b = np.sort(np.asarray(live, dtype=np.float64))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))
