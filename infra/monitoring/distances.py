"""Distribution distances beside PSI and KS, with the thresholds the monitors alert at.

| signal                      | for          | alert at         | why this threshold                                 |
|-----------------------------|--------------|------------------|----------------------------------------------------|
| psi                         | numeric      | > 0.25 (0.1 warn)| the credit-scoring rule of thumb                   |
| ks_statistic                | numeric      | > 0.1            | the statistic, not its p: big samples make every p tiny |
| wasserstein_normalized      | numeric      | > 0.1            | mean shift of 0.1 reference standard deviations    |
| jensen_shannon              | either       | > 0.1            | base-2 distance in [0, 1]                          |
| chi_square_categorical      | categorical  | Cramér's V > 0.1 | effect size, again not the p-value                 |
| categorical_psi             | categorical  | > 0.25           | PSI over categories instead of quantile bins       |
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from infra.monitoring.drift import quantile_bins

THRESHOLDS = {
    "psi": 0.25,
    "ks": 0.1,
    "wasserstein": 0.1,
    "jensen_shannon": 0.1,
    "cramers_v": 0.1,
    "categorical_psi": 0.25,
}


def wasserstein_normalized(reference: np.ndarray, live: np.ndarray) -> float:
    """Earth mover's distance between the two samples, in units of the reference's standard deviation."""
    reference = np.asarray(reference, dtype=np.float64)
    scale = float(np.std(reference)) or 1.0
    return float(stats.wasserstein_distance(reference, np.asarray(live, dtype=np.float64)) / scale)


def _js(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_qm = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.5 * kl_pm + 0.5 * kl_qm, 0.0)))


def jensen_shannon(
    reference: np.ndarray, live: np.ndarray, n_bins: int = 20, categorical: bool = False
) -> float:
    """Jensen-Shannon distance (base 2, 0 = same, 1 = disjoint) over reference-quantile bins or categories."""
    reference, live = np.asarray(reference), np.asarray(live)
    if categorical:
        cats = np.union1d(reference, live)
        p = (reference[:, None] == cats[None, :]).sum(0).astype(np.float64)
        q = (live[:, None] == cats[None, :]).sum(0).astype(np.float64)
        return _js(p, q)
    edges = quantile_bins(reference.astype(np.float64), n_bins)
    p = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1).astype(
        np.float64
    )
    q = np.bincount(np.searchsorted(edges, live, side="right"), minlength=edges.size + 1).astype(np.float64)
    return _js(p, q)


def category_counts(reference: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cats, inverse = np.unique(np.concatenate([reference, live]), return_inverse=True)
    ref = np.bincount(inverse[: len(reference)], minlength=cats.size)
    liv = np.bincount(inverse[len(reference) :], minlength=cats.size)
    return ref, liv


def chi_square_categorical(reference: np.ndarray, live: np.ndarray) -> tuple[float, float, float]:
    """(chi2, p, Cramér's V) of the 2 x K table of category counts (reference vs live)."""
    ref, liv = category_counts(np.asarray(reference), np.asarray(live))
    keep = (ref + liv) > 0
    table = np.stack([ref[keep], liv[keep]])
    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    v = float(np.sqrt(chi2 / table.sum()))  # min(rows, cols) - 1 = 1
    return float(chi2), float(p), v


def categorical_psi(reference_counts: np.ndarray, live_counts: np.ndarray, eps: float = 1e-4) -> float:
    """PSI over categories from counts (or shares) per category, aligned by index."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    live = np.asarray(live_counts, dtype=np.float64)
    ref_p = np.clip(ref / ref.sum(), eps, None)
    live_p = np.clip(live / live.sum(), eps, None)
    return float(np.sum((live_p - ref_p) * np.log(live_p / ref_p)))
