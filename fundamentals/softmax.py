"""Numerically stable softmax and log-softmax, in NumPy and PyTorch, with a hand-written backward.

softmax(x)_i = exp(x_i) / sum_j exp(x_j). The naive formula overflows as soon as one logit passes
log(float32 max) ~ 88.72 (exp -> inf, inf/inf -> nan) and underflows when every logit is below ~ -103.97
(exp -> 0, 0/0 -> nan). Softmax is shift-invariant, so subtracting max(x) makes the largest exponent exp(0) = 1:
no overflow, and the denominator is >= 1, so no 0/0. log-softmax = x - logsumexp(x) with
logsumexp(x) = m + log(sum exp(x - m)) stays finite where log(softmax(x)) gives -inf.
"""

from __future__ import annotations

import numpy as np
import torch

from infra.steps import OneLineParser


def naive_softmax_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x)  # overflows to inf above ~88.72 in float32
    return e / e.sum(axis=axis, keepdims=True)


def softmax_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Max-subtracted softmax: the largest exponent is exp(0) = 1, the denominator is in [1, n]."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def logsumexp_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def log_softmax_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x - logsumexp(x), computed as (x - m) - log(sum exp(x - m)): x - m is exact for nearby floats, while
    x - (m + log(...)) would lose ~ulp(|x|) (6e-5 at |x| = 1000) to cancellation."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def naive_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    shifted = x - x.amax(dim=dim, keepdim=True)
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


class SoftmaxFunction(torch.autograd.Function):
    """Softmax with the backward written by hand: dL/dx = s * (g - sum(g * s)), the Jacobian-vector product
    of J = diag(s) - s s^T without materialising the (n, n) Jacobian."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:  # type: ignore[override]
        s = softmax(x, dim)
        ctx.save_for_backward(s)
        ctx.dim = dim
        return s

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (s,) = ctx.saved_tensors
        return s * (g - (g * s).sum(dim=ctx.dim, keepdim=True)), None


class LogSoftmaxFunction(torch.autograd.Function):
    """log-softmax with a hand-written backward: dL/dx = g - softmax(x) * sum(g)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:  # type: ignore[override]
        y = log_softmax(x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return g - torch.exp(y) * g.sum(dim=ctx.dim, keepdim=True), None


def float32_exp_overflow_threshold() -> np.float32:
    """The smallest float32 x with np.exp(x) == inf, found by bisection over the float32 bit patterns."""
    lo, hi = np.float32(80.0).view(np.int32), np.float32(100.0).view(np.int32)  # exp(lo) finite, exp(hi) inf
    with np.errstate(over="ignore"):
        while hi - lo > 1:
            mid = np.int32((int(lo) + int(hi)) // 2)
            if np.isinf(np.exp(mid.view(np.float32))):
                hi = mid
            else:
                lo = mid
    return np.int32(hi).view(np.float32)


def float32_exp_underflow_threshold() -> np.float32:
    """The largest float32 x with np.exp(x) == 0 (below it every naive softmax denominator is 0)."""
    lo, hi = (
        np.float32(-120.0),
        np.float32(-90.0),
    )  # exp(lo) == 0, exp(hi) > 0; negative floats: bits reversed
    lo_b, hi_b = (
        lo.view(np.int32),
        hi.view(np.int32),
    )  # for negatives a larger bit pattern is a smaller number
    with np.errstate(under="ignore"):
        while lo_b - hi_b > 1:
            mid = np.int32((int(lo_b) + int(hi_b)) // 2)
            if np.exp(mid.view(np.float32)) == 0:
                lo_b = mid
            else:
                hi_b = mid
    return np.int32(lo_b).view(np.float32)


def adversarial_logits(seed: int = 0) -> dict[str, np.ndarray]:
    """float32 inputs that break the naive formula one way or another, shape (4, 8) each."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((4, 8)).astype(np.float32)
    one_hot = np.full((4, 8), -3e4, dtype=np.float32)
    one_hot[:, 0] = 3e4
    return {
        "normal N(0,1)": base,
        "+89 (past 88.72)": base + np.float32(89.0),
        "+1000": base * 10 + np.float32(1000.0),
        "-1000": base * 10 - np.float32(1000.0),
        "spread 1e4": base * np.float32(1e4),
        "one +3e4, rest -3e4": one_hot,
    }


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals softmax", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    over, under = float32_exp_overflow_threshold(), float32_exp_underflow_threshold()
    below = np.nextafter(over, np.float32(0))
    console = Console(width=110)
    console.print(
        f"float32: exp({float(below):.9g}) = {np.exp(below):.6g}, exp({float(over):.9g}) = inf "
        f"(log(FLT_MAX) = {np.log(np.finfo(np.float32).max):.6f}); exp(x) == 0 for x <= {float(under):.9g}"
    )
    table = Table(title="float32 logits (4 x 8); errors vs torch.softmax / torch.log_softmax")
    for col in ("logits", "naive NaN rows", "softmax err", "log_softmax err", "log(softmax) = -inf"):
        table.add_column(col)
    for name, x in adversarial_logits(args.seed).items():
        with np.errstate(all="ignore"):
            naive = naive_softmax_np(x)
            log_naive = np.log(softmax_np(x))
        ref = torch.softmax(torch.from_numpy(x), -1).numpy()
        ref_log = torch.log_softmax(torch.from_numpy(x), -1).numpy()
        table.add_row(
            name,
            f"{int(np.isnan(naive).any(axis=-1).sum())}/4",
            f"{np.abs(softmax_np(x) - ref).max():.1e}",
            f"{np.abs(log_softmax_np(x) - ref_log).max():.1e}",
            f"{int(np.isneginf(log_naive).sum())}/32",
        )
    console.print(table)
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(args.seed)) * 50
    ok_s = torch.autograd.gradcheck(lambda t: SoftmaxFunction.apply(t, -1), (x.requires_grad_(),))
    ok_l = torch.autograd.gradcheck(lambda t: LogSoftmaxFunction.apply(t, -1), (x,))
    console.print(
        f"gradcheck (float64, finite differences vs hand-written backward): softmax {ok_s}, log_softmax {ok_l}"
    )
    return 0
