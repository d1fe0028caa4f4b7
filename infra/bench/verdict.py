"""From locust runs to a verdict: per-run figures, their spread, the noisy-machine guard, and the knee.

The rules of `judge`, in this order:
1. FAIL when a counted run had a failed request: an error is a bug, never noise.
2. TOO NOISY ("machine too noisy to judge") when the floor phase's client-side p99 (the empty /floor route
   alone, at the asked rate, before the runs) is above `noise_fraction` x the SLO: the stack and the machine
   already eat that share of the budget, so a FAIL would be the machine's and a PASS luck.
3. FAIL when the median across runs of the SLO percentile is above the SLO, or the median achieved rate is
   under 90% of the asked.
4. PASS otherwise.
The SLO is judged on locust's figures (client side, as a user sees them); the server's own percentiles
(/stats) sit beside them to show where the time went. Exit codes: 0 PASS, 1 FAIL, 3 TOO NOISY (2 stays the
command line's "bad flag").

The knee (`--ramp`) steps the rate up; a step holds when it passes rules 1 and 3 on its own. The highest
step that held, divided by the server's pinned cores, is the per-core throughput at the SLO.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infra.bench.locust_stats import RouteResult
from infra.system import BenchSpec

PASS, FAIL, TOO_NOISY = "PASS", "FAIL", "TOO NOISY"
EXIT_CODES = {PASS: 0, FAIL: 1, TOO_NOISY: 3}
MIN_ACHIEVED = 0.9  # a run that sent under 90% of the asked rate did not test the asked rate
SPREAD_KEYS = (
    "p50_ms", "p95_ms", "p99_ms", "rps",
    "server_p50_ms", "server_p95_ms", "server_p99_ms",
    "server_cpu_ms_per_request", "locust_cpu_ms_per_request", "locust_cpu_share",
)  # fmt: skip


@dataclass
class RunResult:
    """One locust run against the running server: what locust saw, what /stats saw, the CPU both spent.

    The CPU seconds cover the load window: from locust's first stats row to its exit."""

    label: str  # "run 1", "floor", "step 3", "warm-up"
    rate_asked: float
    users: int
    duration_s: int
    routes: dict[str, RouteResult]
    stages: dict[str, Any]
    server_cpu_s: float = math.nan
    locust_cpu_s: float = math.nan
    window_s: float = math.nan

    @property
    def requests(self) -> int:
        """Every request locust sent in the run (all routes): the denominator of CPU per request."""
        total = self.routes.get("Aggregated")
        if total is not None:
            return total.requests
        return sum(r.requests for r in self.routes.values())

    @property
    def failures(self) -> int:
        return sum(r.failures for name, r in self.routes.items() if name != "Aggregated")


def server_route(spec: BenchSpec) -> str:
    """The path /stats files the judged route under ("recommend" -> "/recommend")."""
    return spec.server_route or "/" + spec.route


def summarize(run: RunResult, route: str, stats_route: str) -> dict[str, Any]:
    """One row of the report: the route's client and server percentiles, rate, and CPU per request."""
    r = run.routes.get(route)
    server = run.stages.get(stats_route, {}).get("total", {})
    nan = math.nan
    per_request = 1000.0 / run.requests if run.requests else nan
    return {
        "label": run.label,
        "rate_asked": run.rate_asked,
        "users": run.users,
        "duration_s": run.duration_s,
        "requests": r.requests if r else 0,
        "failures": run.failures,
        "rps": r.rps if r else 0.0,
        "p50_ms": r.p50_ms if r else nan,
        "p95_ms": r.p95_ms if r else nan,
        "p99_ms": r.p99_ms if r else nan,
        "server_p50_ms": server.get("p50_ms", nan),
        "server_p95_ms": server.get("p95_ms", nan),
        "server_p99_ms": server.get("p99_ms", nan),
        "server_cpu_s": run.server_cpu_s,
        "locust_cpu_s": run.locust_cpu_s,
        "server_cpu_ms_per_request": run.server_cpu_s * per_request,
        "locust_cpu_ms_per_request": run.locust_cpu_s * per_request,
        "locust_cpu_share": run.locust_cpu_s / run.window_s if run.window_s > 0 else nan,  # of one core
    }


def spread(rows: Sequence[dict[str, Any]], keys: Sequence[str] = SPREAD_KEYS) -> dict[str, dict[str, float]]:
    """min / median / max of each key across runs (NaNs left out; all NaN gives NaN)."""
    out = {}
    for key in keys:
        values = [float(row[key]) for row in rows if not math.isnan(float(row[key]))]
        if values:
            out[key] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
        else:
            out[key] = {"min": math.nan, "median": math.nan, "max": math.nan}
    return out


def median_run(runs: Sequence[RunResult], spec: BenchSpec) -> RunResult:
    """The run whose SLO percentile is the median (the lower middle for an even count): the report's tables."""
    key = f"{spec.slo_percentile}_ms"
    ranked = sorted(runs, key=lambda run: _nan_last(getattr(run.routes.get(spec.route), key, math.nan)))
    return ranked[(len(ranked) - 1) // 2]


def _nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value


def run_problems(spec: BenchSpec, run: RunResult) -> list[str]:
    """Rules 1 and 3 for a single run (a ramp step): what broke, empty when the step held."""
    problems = []
    row = summarize(run, spec.route, server_route(spec))
    if row["requests"] == 0:
        return [f"no requests recorded on {spec.route}"]
    if run.failures:
        problems.append(f"{run.failures} failed requests")
    observed = row[f"{spec.slo_percentile}_ms"]
    if observed > spec.slo_p99_ms:
        problems.append(f"{spec.slo_percentile} {observed:g} ms > SLO {spec.slo_p99_ms:g} ms")
    if row["rps"] < MIN_ACHIEVED * run.rate_asked:
        problems.append(f"achieved {row['rps']:.1f} req/s < 90% of the {run.rate_asked:g} asked")
    return problems


@dataclass(frozen=True)
class Verdict:
    kind: str  # PASS, FAIL or TOO NOISY
    line: str  # what the report and the console print
    exit_code: int
    problems: tuple[str, ...] = ()
    floor_limit_ms: float = math.nan  # noise_fraction x SLO: the floor p99 above which nothing is judged

    @property
    def passed(self) -> bool:
        return self.kind == PASS


def judge(
    spec: BenchSpec,
    runs: Sequence[RunResult],
    floor: RunResult | None,
    rate_asked: float,
    noise_fraction: float | None = None,
) -> Verdict:
    """The verdict on the median of the counted runs, after the noisy-machine guard (rules in the docstring)."""
    pct, slo = spec.slo_percentile, spec.slo_p99_ms
    fraction = spec.noise_fraction if noise_fraction is None else noise_fraction
    limit = fraction * slo
    rows = [summarize(run, spec.route, server_route(spec)) for run in runs]
    failures = sum(run.failures for run in runs)
    timing: list[str] = []
    if not rows or all(row["requests"] == 0 for row in rows):
        timing.append(f"no requests recorded on {spec.route}")
    else:
        s = spread(rows, (f"{pct}_ms", "rps"))
        observed, achieved = s[f"{pct}_ms"]["median"], s["rps"]["median"]
        if math.isnan(observed) or observed > slo:
            timing.append(f"median {pct} {observed:g} ms > SLO {slo:g} ms")
        if math.isnan(achieved) or achieved < MIN_ACHIEVED * rate_asked:
            timing.append(f"median achieved {achieved:.1f} req/s < 90% of the {rate_asked:g} asked")
    of_runs = f"over {len(rows)} run{'s' if len(rows) != 1 else ''}"

    if failures:
        problems = (f"{failures} failed requests {of_runs}", *timing)
        return Verdict(FAIL, "FAIL: " + "; ".join(problems), EXIT_CODES[FAIL], problems, limit)
    floor_p99 = floor.routes["floor"].p99_ms if floor and "floor" in floor.routes else math.nan
    if floor_p99 > limit:
        f = floor.routes["floor"]  # type: ignore[union-attr]
        would = "FAIL: " + "; ".join(timing) if timing else "PASS"
        line = (
            f"TOO NOISY: machine too noisy to judge: the empty /floor route's p99 is {floor_p99:g} ms "
            f"> {limit:g} ms ({fraction:g} x the {slo:g} ms SLO) at {floor.rate_asked:g} req/s "  # type: ignore[union-attr]
            f"(floor p50 {f.p50_ms:g}, p95 {f.p95_ms:g} ms); the runs alone would read {would}"
        )
        return Verdict(TOO_NOISY, line, EXIT_CODES[TOO_NOISY], (line,), limit)
    if timing:
        return Verdict(FAIL, "FAIL: " + "; ".join(timing), EXIT_CODES[FAIL], tuple(timing), limit)
    s = spread(rows, (f"{pct}_ms", "rps"))
    floor_note = f"; floor p99 {floor_p99:g} ms <= {limit:g} ms" if not math.isnan(floor_p99) else ""
    line = (
        f"PASS: median {pct} {s[f'{pct}_ms']['median']:g} ms <= SLO {slo:g} ms {of_runs} "
        f"(range {s[f'{pct}_ms']['min']:g}-{s[f'{pct}_ms']['max']:g}), median {s['rps']['median']:.1f} "
        f"of {rate_asked:g} req/s, 0 failed requests{floor_note}"
    )
    return Verdict(PASS, line, EXIT_CODES[PASS], (), limit)


def knee(spec: BenchSpec, steps: Sequence[RunResult], server_cores: int, max_steps: int) -> dict[str, Any]:
    """The ramp's outcome: each step with held/why, the highest rate that held, per-core throughput at the SLO.

    Steps arrive in rising order and the ramp stops at the first that breaks, so "held" is every step but
    possibly the last."""
    rows, held = [], None
    for run in steps:
        problems = run_problems(spec, run)
        row = {
            **summarize(run, spec.route, server_route(spec)),
            "held": not problems,
            "why": "; ".join(problems),
        }
        rows.append(row)
        if problems:
            break
        held = row
    broke = rows[-1] if rows and not rows[-1]["held"] else None
    if broke is not None:
        why = f"at {broke['rate_asked']:g} req/s: {broke['why']}"
    else:
        top = rows[-1]["rate_asked"] if rows else math.nan
        why = f"reached {max_steps} steps without breaking the SLO: the knee is above {top:g} req/s"
    achieved = held["rps"] if held else math.nan
    return {
        "steps": rows,
        "held_rate": held["rate_asked"] if held else None,
        "held_achieved_rps": achieved if held else None,
        "held_p99_ms": held["p99_ms"] if held else None,
        "held_slo_ms": held[f"{spec.slo_percentile}_ms"] if held else None,
        "broke_at": broke["rate_asked"] if broke else None,
        "why_stopped": why,
        "server_cores": server_cores,
        "per_core_rps_at_slo": achieved / server_cores if held else None,
    }
