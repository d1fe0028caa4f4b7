"""Checks for the softmax exercise: exact against torch.softmax and scipy's logsumexp, finite where naive is not."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch
from scipy.special import logsumexp as scipy_logsumexp

from mlsd.exercises.harness import Check, Failed

NAMES = ("softmax", "logsumexp")


def logits(shift: float = 0.0, scale: float = 1.0, shape: tuple[int, ...] = (4, 8)) -> np.ndarray:
    base = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return (base * np.float32(scale) + np.float32(shift)).astype(np.float32)


def compare(got: np.ndarray, want: np.ndarray, what: str, atol: float = 1e-6) -> None:
    got = np.asarray(got)
    if got.shape != want.shape:
        raise Failed(f"{what}: shape {got.shape}, expected {want.shape}")
    if not np.isfinite(got).all():
        raise Failed(f"{what}: {int((~np.isfinite(got)).sum())} of {got.size} values are nan or inf")
    err = float(np.abs(got.astype(np.float64) - want).max())
    if err > atol:
        raise Failed(f"{what}: max |difference| {err:.2e}")


def matches_torch(m: ModuleType) -> None:
    x = logits()
    compare(m.softmax(x), torch.softmax(torch.from_numpy(x), -1).numpy(), "softmax(N(0, 1) logits)")


def normalises_along_axis(m: ModuleType) -> None:
    x = logits(shape=(3, 5))
    got = np.asarray(m.softmax(x, axis=0))
    compare(got, torch.softmax(torch.from_numpy(x), 0).numpy(), "softmax(x, axis=0)")


def finite_at_89(m: ModuleType) -> None:
    x = logits(shift=89.0)
    compare(
        m.softmax(x), torch.softmax(torch.from_numpy(x), -1).numpy(), "softmax(logits around +89, float32)"
    )


def finite_at_minus_1000(m: ModuleType) -> None:
    x = logits(shift=-1000.0, scale=10.0)
    compare(m.softmax(x), torch.softmax(torch.from_numpy(x), -1).numpy(), "softmax(logits around -1000)")


def per_row_max(m: ModuleType) -> None:
    x = logits(scale=10.0)
    x[0] += 1000.0  # one row far above the others: a global max would push the rest below exp's range
    compare(m.softmax(x), torch.softmax(torch.from_numpy(x), -1).numpy(), "softmax(rows 1000 apart)")


def keeps_dtype(m: ModuleType) -> None:
    got = np.asarray(m.softmax(logits()))
    if got.dtype != np.float32:
        raise Failed(f"float32 logits gave {got.dtype} probabilities")


def logsumexp_matches_scipy(m: ModuleType) -> None:
    x = logits()
    got = np.asarray(m.logsumexp(x))
    want = scipy_logsumexp(x.astype(np.float64), axis=-1)
    if got.shape == want.shape and np.isfinite(got).all():
        max_part = x.max(-1)
        if np.abs(got - (want - max_part)).max() < 1e-5:
            raise Failed(
                "off by exactly the row's max", "add the max back: logsumexp(x) = m + log(sum(exp(x - m)))"
            )
    compare(got, want, "logsumexp(N(0, 1) logits)", atol=1e-5)


def logsumexp_finite_at_1000(m: ModuleType) -> None:
    x = logits(shift=1000.0, scale=10.0)
    compare(
        m.logsumexp(x), scipy_logsumexp(x.astype(np.float64), axis=-1), "logsumexp(logits around +1000)", 1e-3
    )


CHECKS = [
    Check("softmax matches torch.softmax on N(0, 1) logits", matches_torch,
          "softmax = exp(x) / exp(x).sum(axis, keepdims=True): keepdims so the division broadcasts per row"),
    Check("softmax normalises along the axis it is given", normalises_along_axis,
          "use the `axis` argument for the max and the sum, not a fixed -1"),
    Check("softmax is finite and exact at logits of +89 (float32)", finite_at_89,
          "the max of the logits is not subtracted: overflow at 89 (float32 exp(88.73) = inf, inf / inf = nan)"),
    Check("softmax is finite and exact at logits of -1000", finite_at_minus_1000,
          "every exp underflows to 0 below -104 and 0 / 0 = nan: subtract the max so the largest term is exp(0) = 1"),
    Check("softmax subtracts each row's own max", per_row_max,
          "subtract x.max(axis, keepdims=True), not the global x.max(): a row far below the global max underflows"),
    Check("softmax keeps float32 as float32", keeps_dtype,
          "do not build float64 arrays along the way (np.float64 constants, np.array(..., dtype=float))"),
    Check("logsumexp matches scipy.special.logsumexp", logsumexp_matches_scipy,
          "logsumexp(x) = m + log(sum(exp(x - m))) along `axis`, with that axis removed (no keepdims)"),
    Check("logsumexp is finite at logits of +1000", logsumexp_finite_at_1000,
          "exp(1000) overflows: subtract the max before exp and add it back after the log"),
]  # fmt: skip
