"""The statistics of an online experiment, vectorised so that thousands of simulated experiments run at once.

Fixed-horizon tests: two-proportion z-test, Welch's t-test. Variance reduction: CUPED.
Peeking-safe: mSPRT (mixture sequential probability ratio test) with its confidence sequence.
Guards: sample-ratio mismatch (chi-square); Holm and Benjamini-Hochberg for many metrics;
cluster-level analysis for cluster-randomised or switchback designs (interference between units).

Every function takes arrays (one entry per experiment, or per look) and broadcasts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

SRM_ALPHA = 0.001  # SRM alerts at p < 0.001: a real split mismatch is large, a false alarm costs a rerun


@dataclass(frozen=True)
class TestResult:
    """Effect (treatment - control), its standard error, the p-value and a (1 - alpha) interval."""

    effect: np.ndarray
    se: np.ndarray
    statistic: np.ndarray
    p_value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray

    def relative(self, control_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lift and its interval as a share of the control mean (delta method ignored: control fixed)."""
        return self.effect / control_mean, self.ci_low / control_mean, self.ci_high / control_mean


def two_proportion_ztest(
    clicks_a: np.ndarray, n_a: np.ndarray, clicks_b: np.ndarray, n_b: np.ndarray, alpha: float = 0.05
) -> TestResult:
    """H0: p_a == p_b. Pooled variance for the test, unpooled for the interval (the usual pairing)."""
    clicks_a, n_a, clicks_b, n_b = (np.asarray(v, dtype=np.float64) for v in (clicks_a, n_a, clicks_b, n_b))
    p_a, p_b = clicks_a / n_a, clicks_b / n_b
    pooled = (clicks_a + clicks_b) / (n_a + n_b)
    se_pooled = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se_pooled > 0, (p_b - p_a) / se_pooled, 0.0)
    se = np.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    q = stats.norm.ppf(1 - alpha / 2)
    effect = p_b - p_a
    return TestResult(effect, se, z, 2 * stats.norm.sf(np.abs(z)), effect - q * se, effect + q * se)


def welch_from_moments(
    mean_a: np.ndarray, var_a: np.ndarray, n_a: np.ndarray,
    mean_b: np.ndarray, var_b: np.ndarray, n_b: np.ndarray, alpha: float = 0.05,
) -> TestResult:  # fmt: skip
    """Welch's t-test from per-arm means, sample variances (ddof=1) and counts."""
    va, vb = np.asarray(var_a) / np.asarray(n_a), np.asarray(var_b) / np.asarray(n_b)
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (np.asarray(n_a) - 1) + vb**2 / (np.asarray(n_b) - 1))
    effect = np.asarray(mean_b) - np.asarray(mean_a)
    t = effect / se
    q = stats.t.ppf(1 - alpha / 2, df)
    return TestResult(effect, se, t, 2 * stats.t.sf(np.abs(t), df), effect - q * se, effect + q * se)


def welch_ttest(a: np.ndarray, b: np.ndarray, alpha: float = 0.05, axis: int = -1) -> TestResult:
    """Welch's t-test on two samples (along `axis`: one row per simulated experiment)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return welch_from_moments(
        a.mean(axis), a.var(axis, ddof=1), np.full(a.mean(axis).shape, a.shape[axis]),
        b.mean(axis), b.var(axis, ddof=1), np.full(b.mean(axis).shape, b.shape[axis]), alpha,
    )  # fmt: skip


def cuped(y: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """CUPED (Deng et al. 2013): y - theta (x - mean x), theta = cov(x, y) / var(x), x a pre-period covariate.

    Estimate theta on both arms pooled (x is unaffected by treatment, so this stays unbiased); the
    variance falls by the factor (1 - rho^2), rho = corr(x, y).
    """
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis, keepdims=True)
    yc = y - y.mean(axis, keepdims=True)
    theta = (xc * yc).sum(axis, keepdims=True) / (xc * xc).sum(axis, keepdims=True)
    return y - theta * xc


def msprt_lambda(effect: np.ndarray, variance: np.ndarray, tau: float) -> np.ndarray:
    """Mixture likelihood ratio for H0: effect = 0 against effect ~ N(0, tau^2), effect_hat ~ N(effect, V)."""
    v = np.asarray(variance, dtype=np.float64)
    t2 = tau**2
    return np.sqrt(v / (v + t2)) * np.exp(t2 * np.asarray(effect) ** 2 / (2 * v * (v + t2)))


def msprt_pvalues(effect: np.ndarray, variance: np.ndarray, tau: float, axis: int = -1) -> np.ndarray:
    """Always-valid p-values over successive looks along `axis`: p_n = min(p_{n-1}, 1 / Lambda_n).

    Stopping the first time p_n < alpha keeps the false-positive rate <= alpha however often one looks
    (Johari et al. 2017, "Peeking at A/B tests").
    """
    lam = msprt_lambda(effect, variance, tau)
    return np.minimum.accumulate(np.minimum(1.0, 1.0 / lam), axis=axis)


def confidence_sequence(
    effect: np.ndarray, variance: np.ndarray, tau: float, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """The interval the mSPRT implies at each look: it covers the true effect at all looks at once w.p. 1 - alpha."""
    v = np.asarray(variance, dtype=np.float64)
    t2 = tau**2
    half = np.sqrt(v * (v + t2) / t2 * (2 * np.log(1 / alpha) + np.log((v + t2) / v)))
    return np.asarray(effect) - half, np.asarray(effect) + half


def srm_check(counts: npt.ArrayLike, weights: npt.ArrayLike) -> tuple[float, float, bool]:
    """Sample-ratio mismatch: chi-square of observed units per arm against the designed split.

    Returns (chi2, p, alert); alert when p < 0.001. An SRM means assignment or logging is broken:
    do not read the metrics until it is explained.
    """
    counts = np.asarray(counts, dtype=np.float64)
    expected = np.asarray(weights, dtype=np.float64) / np.sum(weights) * counts.sum()
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    p = float(stats.chi2.sf(chi2, counts.size - 1))
    return chi2, p, p < SRM_ALPHA


def holm(p_values: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Holm's step-down: reject mask controlling the family-wise error rate."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    m = p.size
    thresholds = alpha / (m - np.arange(m))
    passed = p[order] <= thresholds
    n_reject = m if passed.all() else int(np.argmin(passed))
    reject = np.zeros(m, dtype=bool)
    reject[order[:n_reject]] = True
    return reject


def benjamini_hochberg(p_values: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg step-up: reject mask controlling the false-discovery rate."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    m = p.size
    below = p[order] <= alpha * np.arange(1, m + 1) / m
    k = int(np.max(np.flatnonzero(below))) + 1 if below.any() else 0
    reject = np.zeros(m, dtype=bool)
    reject[order[:k]] = True
    return reject


def cluster_ttest(
    values: np.ndarray, clusters: np.ndarray, treated: np.ndarray, alpha: float = 0.05
) -> TestResult:
    """Analyse at the unit of randomisation: per-cluster means, then Welch across clusters.

    For cluster-randomised designs (all users of a market, or all requests in a time slot of a
    switchback, get one arm) the units inside a cluster are correlated; a unit-level test
    underestimates the variance and over-rejects.
    """
    values, clusters, treated = (
        np.asarray(values, dtype=np.float64),
        np.asarray(clusters),
        np.asarray(treated),
    )
    ids, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=ids.size)
    counts = np.bincount(inverse, minlength=ids.size)
    arm = np.bincount(inverse, weights=treated.astype(np.float64), minlength=ids.size) / counts
    if np.any((arm > 0) & (arm < 1)):
        raise ValueError("a cluster holds both arms; cluster_ttest needs one arm per cluster")
    means = sums / counts
    return welch_ttest(means[arm == 0], means[arm == 1], alpha)
