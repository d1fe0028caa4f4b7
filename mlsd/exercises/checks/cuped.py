"""Checks for CUPED: equal to infra.experiments.stats.cuped; the mean kept; the variance cut by exactly
1 - rho^2 in sample; the treatment effect kept in expectation (over simulated experiments)."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from infra.experiments.stats import cuped as project_cuped
from mlsd.exercises.harness import Check, Failed

NAMES = ("cuped",)


def metric(n: int = 4000, rho: float = 0.7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 3.0, n)  # pre-period spend: skewed, not centred
    y = 5.0 + rho * (x - x.mean()) / x.std() * 2 + np.sqrt(1 - rho**2) * 2 * rng.standard_normal(n)
    return y, x


def adjusted(m: ModuleType, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    got = np.asarray(m.cuped(y.copy(), x.copy()), dtype=np.float64)
    if got.shape != y.shape:
        raise Failed(f"returned shape {got.shape}, expected {y.shape}", "return one adjusted value per unit")
    return got


def matches_project(m: ModuleType) -> None:
    y, x = metric()
    got, want = adjusted(m, y, x), project_cuped(y, x)
    if np.allclose(got, want, atol=1e-9):
        return
    cov = np.cov(x, y, ddof=1)[0, 1]
    mistakes = {
        "theta = cov(x, y) / var(x): divide by the COVARIATE's variance": y
        - cov / y.var(ddof=1) * (x - x.mean()),
        "theta = cov(x, y) / var(x), not the correlation": y - np.corrcoef(x, y)[0, 1] * (x - x.mean()),
        "subtract theta * (x - mean(x)): without centring x the metric's mean moves": y
        - cov / x.var(ddof=1) * x,
    }
    for hint, wrong in mistakes.items():
        if np.allclose(got, wrong, atol=1e-9):
            raise Failed(
                f"max |difference| from infra.experiments.stats.cuped {np.abs(got - want).max():.3g}", hint
            )
    raise Failed(f"max |difference| from infra.experiments.stats.cuped {np.abs(got - want).max():.3g}")


def keeps_mean(m: ModuleType) -> None:
    y, x = metric()
    got = adjusted(m, y, x)
    if abs(got.mean() - y.mean()) > 1e-9:
        raise Failed(f"mean {got.mean():.4f}, the metric's mean is {y.mean():.4f}")


def variance_cut(m: ModuleType) -> None:
    y, x = metric()
    got = adjusted(m, y, x)
    rho = np.corrcoef(x, y)[0, 1]
    ratio, want = got.var() / y.var(), 1 - rho**2
    if abs(ratio - want) > 1e-9:
        raise Failed(f"variance ratio {ratio:.4f}, expected 1 - rho^2 = {want:.4f}")


def keeps_effect(m: ModuleType) -> None:
    effects = []
    for seed in range(200):
        y, x = metric(n=400, seed=seed)
        arm = np.random.default_rng(10_000 + seed).integers(0, 2, y.size).astype(bool)
        y = y + 0.5 * arm  # the true effect is 0.5
        got = adjusted(m, y, x)
        effects.append(got[arm].mean() - got[~arm].mean())
    mean, se = float(np.mean(effects)), float(np.std(effects) / np.sqrt(len(effects)))
    if abs(mean - 0.5) > 4 * se + 1e-3:
        raise Failed(f"over 200 simulated experiments the effect averages {mean:.3f} ± {se:.3f}, truth 0.5")


CHECKS = [
    Check("equals infra.experiments.stats.cuped", matches_project,
          "theta = cov(x, y) / var(x); return y - theta * (x - x.mean())"),
    Check("the adjusted metric has the metric's mean", keeps_mean,
          "subtract theta * (x - mean(x)): centring x keeps the mean, and so the treatment effect"),
    Check("the variance falls by exactly 1 - rho^2 (in sample)", variance_cut,
          "theta = cov(x, y) / var(x) is the least-squares slope, the one that removes rho^2 of the variance"),
    Check("the treatment effect is unchanged on average (200 simulated A/B tests)", keeps_effect,
          "estimate theta on both arms pooled, from a pre-period x that the treatment cannot move"),
]  # fmt: skip
