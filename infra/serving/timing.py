"""Per-request stage timing: `with stage("model"): ...` inside a handler.

The middleware opens a RequestTimings for each request; stages add to it; the response carries
them as a Server-Timing header and they feed /metrics and /stats.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np


class RequestTimings:
    __slots__ = ("stages", "flags")

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}  # stage -> milliseconds
        self.flags: dict[str, str] = {}

    def add(self, name: str, ms: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + ms

    def header(self, total_ms: float) -> str:
        parts = [f"{name};dur={ms:.3f}" for name, ms in self.stages.items()]
        parts.append(f"total;dur={total_ms:.3f}")
        return ", ".join(parts)


_current: ContextVar[RequestTimings | None] = ContextVar("mlsd_request_timings", default=None)


def current_timings() -> RequestTimings | None:
    return _current.get()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time a block as one stage of the current request (a no-op outside a request)."""
    timings = _current.get()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings.add(name, (time.perf_counter() - t0) * 1000.0)


class StageStats:
    """Recent per-(route, stage) latencies in ms, bounded, for /stats percentiles."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self._samples: dict[tuple[str, str], deque[float]] = defaultdict(lambda: deque(maxlen=maxlen))

    def record(self, route: str, stage_name: str, ms: float) -> None:
        self._samples[(route, stage_name)].append(ms)

    def reset(self) -> None:
        self._samples.clear()

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
        for (route, stage_name), samples in list(self._samples.items()):
            arr = np.fromiter(samples, dtype=np.float64)
            if arr.size == 0:
                continue
            p50, p95, p99 = np.percentile(arr, [50, 95, 99])
            out[route][stage_name] = {
                "count": int(arr.size),
                "mean_ms": float(arr.mean()),
                "p50_ms": float(p50),
                "p95_ms": float(p95),
                "p99_ms": float(p99),
                "max_ms": float(arr.max()),
            }
        return dict(out)
