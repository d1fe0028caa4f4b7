"""Reading locust's totals back: the percentile rule checked against locust's own function, the JSON merged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from infra.bench.locust_stats import parse_locust_json, percentile_from_histogram


def test_percentiles_match_locusts_own_function() -> None:
    rng = np.random.default_rng(0)
    hist = {int(k): int(v) for k, v in zip(rng.integers(0, 300, 60), rng.integers(1, 500, 60), strict=True)}
    n = sum(hist.values())
    percents = [0.5, 0.9, 0.95, 0.99, 0.999, 1.0]
    # in a child process: importing locust monkey-patches the interpreter (gevent), not something to do in pytest
    code = (
        "import json, sys\nfrom locust.stats import calculate_response_time_percentile as f\n"
        "h = {int(k): v for k, v in json.loads(sys.argv[1]).items()}\n"
        "print(json.dumps([f(h, int(sys.argv[2]), p) for p in json.loads(sys.argv[3])]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(hist), str(n), json.dumps(percents)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [percentile_from_histogram(hist, n, p) for p in percents] == json.loads(out.stdout)


def entry(name: str, times: dict[str, int], start: float, last: float, failures: int = 0) -> dict:
    n = sum(times.values())
    return {
        "name": name, "method": "GET", "last_request_timestamp": last, "start_time": start, "num_requests": n,
        "num_none_requests": 0, "num_failures": failures, "max_response_time": max(map(float, times), default=0.0) + 0.4,
        "total_response_time": sum(float(k) * v for k, v in times.items()), "min_response_time": 1,
        "total_content_length": 0, "response_times": times, "num_reqs_per_sec": {}, "num_fail_per_sec": {},
    }  # fmt: skip


def test_the_json_totals_become_routes_and_an_aggregated_row(tmp_path: Path) -> None:
    path = tmp_path / "run1.json"
    demo = entry("demo", {"2": 90, "5": 9, "40": 1}, start=100.0, last=110.0, failures=2)
    floor = entry("floor", {"1": 20}, start=100.0, last=110.0)
    path.write_text(json.dumps([demo, floor, entry("idle", {}, 100.0, 100.0)]))
    routes = parse_locust_json(path)
    assert set(routes) == {"demo", "floor", "Aggregated"}  # an entry with no requests is left out
    d = routes["demo"]
    assert (d.requests, d.failures, d.rps) == (100, 2, 10.0)
    # 1 request in 100 took 40 ms: by locust's rule that is the p99
    assert (d.p50_ms, d.p95_ms, d.p99_ms, d.max_ms) == (2.0, 5.0, 40.0, 40.4)
    assert d.mean_ms == (2 * 90 + 5 * 9 + 40) / 100
    agg = routes["Aggregated"]
    assert (agg.requests, agg.failures, agg.rps, agg.p50_ms) == (120, 2, 12.0, 2.0)
