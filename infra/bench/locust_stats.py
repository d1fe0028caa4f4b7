"""locust's own output, read back: every client-side latency in the report comes from here.

The totals come from `--json-file`, which locust writes once the run has stopped: its CSV of totals is
rewritten only once a second, so it can miss the last second of requests (all of them, in a 2 s test run).
The per-second CSV history draws the latency plot. Percentiles are locust's own rule on its own histogram
(response times rounded to whole ms under 100 ms, to 10 ms under 1 s), so they match what locust prints.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RouteResult:
    """One row of <prefix>_stats.csv: a request name's totals over one locust run (ms; locust rounds
    times under 100 ms to whole ms)."""

    name: str
    requests: int
    failures: int
    rps: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


def _num(value: str | None) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def parse_locust_history(path: Path) -> dict[str, list[dict[str, float]]]:
    """Per-second rows of <prefix>_stats_history.csv by request name: t, rps, p50, p95, p99."""
    series: dict[str, list[dict[str, float]]] = {}
    if not path.exists():
        return series
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return series
    t0 = _num(rows[0]["Timestamp"])
    for row in rows:
        if row.get("50%") in (None, "N/A", ""):
            continue
        series.setdefault(row["Name"], []).append(
            {
                "t": _num(row["Timestamp"]) - t0,
                "rps": _num(row["Requests/s"]),
                "p50": _num(row["50%"]),
                "p95": _num(row["95%"]),
                "p99": _num(row["99%"]),
            }
        )
    return series


def percentile_from_histogram(response_times: dict[int, int], num_requests: int, percent: float) -> float:
    """locust's rule (locust.stats.calculate_response_time_percentile, copied to keep the harness free of the
    locust import, which monkey-patches the process): the smallest time that `percent` of requests beat."""
    num_of_request = int(num_requests * percent)
    processed = 0
    for response_time in sorted(response_times, reverse=True):
        processed += response_times[response_time]
        if num_requests - processed <= num_of_request:
            return float(response_time)
    return 0.0


def _route(name: str, entries: list[dict[str, Any]]) -> RouteResult:
    times: Counter[int] = Counter()
    for e in entries:
        times.update({int(float(k)): v for k, v in e["response_times"].items()})
    requests = sum(e["num_requests"] for e in entries)
    span = max(e["last_request_timestamp"] or 0.0 for e in entries) - min(e["start_time"] for e in entries)
    pct = {p: percentile_from_histogram(times, requests, p) for p in (0.5, 0.95, 0.99, 0.999)}
    return RouteResult(
        name=name,
        requests=requests,
        failures=sum(e["num_failures"] for e in entries),
        rps=requests / span if span > 0 else 0.0,
        mean_ms=sum(e["total_response_time"] for e in entries) / requests if requests else 0.0,
        p50_ms=pct[0.5],
        p95_ms=pct[0.95],
        p99_ms=pct[0.99],
        p999_ms=pct[0.999],
        max_ms=float(max((e["max_response_time"] for e in entries), default=0.0)),
    )


def parse_locust_json(path: Path) -> dict[str, RouteResult]:
    """The totals of `locust --json-file <prefix>` (<prefix>.json) by request name, plus an 'Aggregated' row.

    rps is requests over the span from the route's first stats entry to its last request."""
    entries = [e for e in json.loads(path.read_text()) if e["num_requests"]]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_name.setdefault(e["name"], []).append(e)
    results = {name: _route(name, group) for name, group in by_name.items()}
    if entries:
        results["Aggregated"] = _route("Aggregated", entries)
    return results
