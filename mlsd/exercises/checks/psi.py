"""Checks for PSI: equal to infra.monitoring.psi and to the formula on reference-decile bins; 0 on the same
sample; finite with an empty bin; invariant to a monotone transform; out-of-range values counted."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from infra.monitoring import psi as project_psi
from mlsd.exercises.harness import Check, Failed

NAMES = ("psi",)
EPS = 1e-4


def samples(n_ref: int = 5000, n_live: int = 5000, shift: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal(n_ref), rng.standard_normal(n_live) * 1.2 + shift


def shares(
    reference: np.ndarray, live: np.ndarray, equal_width: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    if equal_width:
        edges = np.linspace(min(reference.min(), live.min()), max(reference.max(), live.max()), 11)[1:-1]
    else:
        edges = np.quantile(reference, np.linspace(0, 1, 11)[1:-1])
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=10) / reference.size
    liv = np.bincount(np.searchsorted(edges, live, side="right"), minlength=10) / live.size
    return np.clip(ref, EPS, None), np.clip(liv, EPS, None)


def value(m: ModuleType, reference: np.ndarray, live: np.ndarray) -> float:
    got = m.psi(reference, live)
    try:
        return float(got)
    except (TypeError, ValueError):
        raise Failed(
            f"returned {type(got).__name__}, expected a float", "return one number: the sum over bins"
        ) from None


def same_sample_is_zero(m: ModuleType) -> None:
    ref, _ = samples()
    got = value(m, ref, ref.copy())
    if not abs(got) < 1e-12:
        raise Failed(f"PSI of a sample against itself: {got:.3g}")


def matches_project(m: ModuleType) -> None:
    ref, live = samples()
    got, want = value(m, ref, live), project_psi(ref, live)
    if abs(got - want) <= 1e-9:
        return
    r, lv = shares(ref, live)
    we_r, we_l = shares(ref, live, equal_width=True)
    mistakes = {
        "PSI = sum (live% - ref%) * ln(live% / ref%); sum live% * ln(live% / ref%) alone is the KL divergence":
            float(np.sum(lv * np.log(lv / r))),
        "PSI = sum (live% - ref%) * ln(live% / ref%); sum ref% * ln(ref% / live%) alone is the KL divergence":
            float(np.sum(r * np.log(r / lv))),
        "bin at the reference's quantiles (np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1])), "
        "not equal-width bins": float(np.sum((we_l - we_r) * np.log(we_l / we_r))),
    }  # fmt: skip
    for hint, wrong in mistakes.items():
        if abs(got - wrong) <= 1e-9:
            raise Failed(f"PSI {got:.6f}, expected {want:.6f}", hint)
    raise Failed(f"N(0, 1) vs N(0.3, 1.2^2): PSI {got:.6f}, expected {want:.6f}")


def empty_bin_is_finite(m: ModuleType) -> None:
    ref, _ = samples()
    live = np.full(1000, np.median(ref))  # every live value in one bin, nine bins empty
    got, want = value(m, ref, live), project_psi(ref, live)
    if not np.isfinite(got) or abs(got - want) > 1e-9:
        raise Failed(f"live values all in one bin: PSI {got}, expected {want:.4f}")


def monotone_invariant(m: ModuleType) -> None:
    ref, live = samples()
    a, b = value(m, ref, live), value(m, np.exp(ref), np.exp(live))
    if abs(a - b) > 1e-9:
        raise Failed(f"PSI {a:.6f} on x but {b:.6f} on exp(x)")


def out_of_range_counted(m: ModuleType) -> None:
    ref, _ = samples()
    live = np.concatenate([ref[:2500], ref.max() + 1 + np.arange(2500.0)])  # half of live above the reference
    got, want = value(m, ref, live), project_psi(ref, live)
    if abs(got - want) > 1e-9:
        raise Failed(f"half of live above the reference's max: PSI {got:.4f}, expected {want:.4f}")


def shares_not_counts(m: ModuleType) -> None:
    ref, live = samples(5000, 800, shift=0.0)
    got, want = value(m, ref, live), project_psi(ref, live)
    if abs(got - want) > 1e-9:
        raise Failed(
            f"5,000 reference rows, 800 live rows of one distribution: PSI {got:.4f}, expected {want:.4f}"
        )


CHECKS = [
    Check("PSI of a sample against itself is 0", same_sample_is_zero,
          "use the same bin edges (the reference's quantiles) for both samples"),
    Check("equals infra.monitoring.psi on N(0, 1) vs N(0.3, 1.2^2)", matches_project,
          "edges = quantiles of the reference; shares per bin clipped at eps; sum (live - ref) * ln(live / ref)"),
    Check("finite, and right, when a bin is empty", empty_bin_is_finite,
          "clip the bin shares at eps before the log: an empty bin gives ln(0) = -inf"),
    Check("unchanged by a monotone transform of the feature", monotone_invariant,
          "quantile bins make PSI depend only on ranks: did you use equal-width bins or a fixed range?"),
    Check("live values outside the reference's range still count", out_of_range_counted,
          "the first and last bins are open-ended: np.searchsorted on the inner edges, not np.histogram over the "
          "reference's range (which drops what falls outside it)"),
    Check("samples of different sizes are compared by shares", shares_not_counts,
          "divide each sample's counts by its own size"),
]  # fmt: skip
