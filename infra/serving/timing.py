"""Per-request stage timing: `with stage("model"): ...` inside a handler.

The middleware opens a RequestTimings for each request; stages add to it; the response carries
them as a Server-Timing header and they feed /metrics and /stats.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

SERIES_STEP_S = 2  # one console chart point per 2 s
SERIES_WINDOW_S = 600  # kept; the console shows the last 5 minutes by default
MAX_SAMPLES_PER_STEP = 4000  # per (route, stage) per step: the percentiles of a burst, bounded memory


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


class StageSeries:
    """Per-step latencies of every (route, stage) and the system's gauges, for the last SERIES_WINDOW_S seconds.

    A closed step's percentiles are computed once and kept; only the open step is summarised on each poll."""

    def __init__(self, step_s: int = SERIES_STEP_S, window_s: int = SERIES_WINDOW_S) -> None:
        self.step_s, self.window_s = step_s, window_s
        self._lock = threading.Lock()
        self._raw: dict[int, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
        self._gauges: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self._closed: dict[int, dict[str, Any]] = {}

    def _step(self, now: float | None = None) -> int:
        return int((time.time() if now is None else now) // self.step_s)

    def record(self, route: str, stage_name: str, ms: float) -> None:
        with self._lock:
            samples = self._raw[self._step()][(route, stage_name)]
            if len(samples) < MAX_SAMPLES_PER_STEP:
                samples.append(ms)

    def gauge(self, name: str, value: float) -> None:
        """One observation of a system figure (recall@100, decline rate...): the chart shows each step's mean."""
        with self._lock:
            self._gauges[self._step()][name].append(float(value))

    def reset(self) -> None:
        with self._lock:
            self._raw.clear()
            self._gauges.clear()
            self._closed.clear()

    def _summarise(self, step: int) -> dict[str, Any]:
        lat: dict[str, dict[str, list[float]]] = defaultdict(dict)
        for (route, stage_name), samples in self._raw.get(step, {}).items():
            p50, p99 = np.percentile(np.asarray(samples), [50, 99])
            lat[route][stage_name] = [round(float(p50), 3), round(float(p99), 3), len(samples)]
        gauges = {name: round(float(np.mean(v)), 4) for name, v in self._gauges.get(step, {}).items() if v}
        return {"latency": dict(lat), "gauges": gauges}

    def series(self, window_s: int) -> dict[str, Any]:
        """{"t": [unix seconds], "latency": {route: {stage: {"p50": [...], "p99": [...], "rps": [...]}}},
        "gauges": {name: [...]}} with None where a step had no sample."""
        now = self._step()
        steps = list(range(now - max(1, window_s // self.step_s) + 1, now + 1))
        with self._lock:
            for old in [s for s in self._raw if s < now - self.window_s // self.step_s]:
                self._raw.pop(old, None)
                self._gauges.pop(old, None)
                self._closed.pop(old, None)
            summaries = []
            for s in steps:
                if s < now and s not in self._closed:
                    self._closed[s] = self._summarise(s)
                summaries.append(self._closed[s] if s < now else self._summarise(s))
        routes = {(r, st) for summ in summaries for r, stages in summ["latency"].items() for st in stages}
        latency: dict[str, dict[str, dict[str, list]]] = defaultdict(dict)
        for route, stage_name in sorted(routes):
            rows = [summ["latency"].get(route, {}).get(stage_name) for summ in summaries]
            latency[route][stage_name] = {
                "p50": [r[0] if r else None for r in rows],
                "p99": [r[1] if r else None for r in rows],
                "rps": [round(r[2] / self.step_s, 2) if r else 0 for r in rows],
            }
        names = sorted({n for summ in summaries for n in summ["gauges"]})
        gauges = {n: [summ["gauges"].get(n) for summ in summaries] for n in names}
        return {"t": [s * self.step_s for s in steps], "step_s": self.step_s, "latency": dict(latency),
                "gauges": gauges}  # fmt: skip
