"""The verdict rules on synthetic runs: PASS, FAIL, TOO NOISY, the median across runs, the spread, the knee."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from infra.bench.locust_stats import RouteResult
from infra.bench.report import BenchReport, render_markdown
from infra.bench.verdict import (
    EXIT_CODES,
    FAIL,
    PASS,
    TOO_NOISY,
    RunResult,
    judge,
    knee,
    median_run,
    run_problems,
    spread,
    summarize,
)
from infra.system import BenchSpec

SPEC = BenchSpec(app="x:y", locustfile="f.py", route="demo", slo_p99_ms=50.0, rate=100.0, users=3)


def route(name: str, p99: float, rps: float = 100.0, failures: int = 0, p50: float = 2.0) -> RouteResult:
    return RouteResult(name, 3000, failures, rps, p50, p50, p99 / 2, p99, p99, p99)


def run(
    p99: float, rps: float = 100.0, failures: int = 0, label: str = "run", rate: float = 100.0
) -> RunResult:
    stages = {
        "/demo": {
            "total": {
                "count": 3000,
                "mean_ms": 1.0,
                "p50_ms": 0.5,
                "p95_ms": 1.0,
                "p99_ms": 2.0,
                "max_ms": 3.0,
            }
        }
    }
    routes = {"demo": route("demo", p99, rps, failures), "floor": route("floor", 3.0, 20.0)}
    routes["Aggregated"] = RouteResult("Aggregated", 3600, failures, rps + 20, 2, 2, 3, p99, p99, p99)
    return RunResult(label, rate, 3, 30, routes, stages, server_cpu_s=1.8, locust_cpu_s=3.6, window_s=36.0)


def floor_phase(p99: float) -> RunResult:
    return RunResult("floor", 100.0, 2, 30, {"floor": route("floor", p99)}, {}, 1.0, 1.0, 30.0)


def test_pass_when_the_median_run_meets_the_slo_on_a_quiet_floor() -> None:
    v = judge(SPEC, [run(8), run(9), run(10)], floor_phase(3), 100)
    assert (v.kind, v.exit_code, v.passed) == (PASS, 0, True)
    assert "median p99 9 ms <= SLO 50 ms over 3 runs (range 8-10)" in v.line
    assert "floor p99 3 ms <= 25 ms" in v.line


def test_one_slow_run_of_three_does_not_decide_the_verdict_two_do() -> None:
    assert judge(SPEC, [run(8), run(90), run(10)], floor_phase(3), 100).kind == PASS
    two_slow = judge(SPEC, [run(8), run(90), run(80)], floor_phase(3), 100)
    assert two_slow.kind == FAIL and two_slow.exit_code == 1
    assert "median p99 80 ms > SLO 50 ms" in two_slow.line


def test_fail_when_the_median_achieved_rate_is_under_90_percent() -> None:
    v = judge(SPEC, [run(8, rps=80), run(8, rps=85), run(8, rps=99)], floor_phase(3), 100)
    assert v.kind == FAIL and "median achieved 85.0 req/s < 90% of the 100 asked" in v.line


def test_too_noisy_when_the_floor_alone_eats_half_the_slo() -> None:
    v = judge(SPEC, [run(48), run(53), run(60)], floor_phase(30), 100)
    assert (v.kind, v.exit_code, v.passed) == (TOO_NOISY, 3, False)
    assert "machine too noisy to judge" in v.line and "p99 is 30 ms > 25 ms (0.5 x the 50 ms SLO)" in v.line
    assert "would read FAIL: median p99 53 ms > SLO 50 ms" in v.line  # the runs' own figures stay visible
    # the fraction is the spec's field, and a caller may override it
    assert judge(replace(SPEC, noise_fraction=0.7), [run(8)], floor_phase(30), 100).kind == PASS
    assert judge(SPEC, [run(8)], floor_phase(30), 100, noise_fraction=0.7).kind == PASS
    assert judge(SPEC, [run(8)], floor_phase(25), 100).kind == PASS  # at the limit is not above it


def test_failed_requests_fail_even_on_a_noisy_machine_an_error_is_never_noise() -> None:
    v = judge(SPEC, [run(8), run(8, failures=3), run(8)], floor_phase(40), 100)
    assert v.kind == FAIL and "3 failed requests over 3 runs" in v.line


def test_no_floor_phase_means_no_guard_and_no_requests_is_a_fail() -> None:
    assert judge(SPEC, [run(8)], None, 100).kind == PASS
    empty = RunResult("run 1", 100, 3, 30, {}, {})
    assert judge(SPEC, [empty], None, 100).kind == FAIL


def test_exit_codes_are_distinct_and_leave_2_to_the_command_line() -> None:
    assert EXIT_CODES == {PASS: 0, FAIL: 1, TOO_NOISY: 3}


def test_the_slo_percentile_is_the_specs() -> None:
    p95_spec = replace(SPEC, slo_percentile="p95", slo_p99_ms=30.0)
    assert judge(p95_spec, [run(50)], None, 100).kind == PASS  # p95 is p99 / 2 = 25 ms here
    assert judge(p95_spec, [run(70)], None, 100).kind == FAIL


def test_summary_rows_carry_server_percentiles_and_cpu_per_request() -> None:
    row = summarize(run(8), "demo", "/demo")
    assert row["p99_ms"] == 8 and row["server_p99_ms"] == 2.0 and row["server_p50_ms"] == 0.5
    assert row["server_cpu_ms_per_request"] == pytest.approx(1.8 * 1000 / 3600)  # over every request sent
    assert row["locust_cpu_ms_per_request"] == pytest.approx(1.0)
    assert row["locust_cpu_share"] == pytest.approx(0.1)


def test_spread_is_min_median_max_across_runs_ignoring_nan() -> None:
    rows = [summarize(run(p), "demo", "/demo") for p in (12, 8, 30)]
    s = spread(rows)
    assert s["p99_ms"] == {"min": 8, "median": 12, "max": 30}
    rows[0]["server_p99_ms"] = math.nan
    assert spread(rows)["server_p99_ms"]["median"] == 2.0


def test_median_run_is_the_run_with_the_median_slo_percentile() -> None:
    runs = [run(12, label="run 1"), run(8, label="run 2"), run(30, label="run 3")]
    assert median_run(runs, SPEC).label == "run 1"
    assert median_run(runs[:2], SPEC).label == "run 2"  # even count: the lower middle


def test_knee_is_the_highest_rate_that_held_per_server_core() -> None:
    steps = [
        run(8, rps=100, rate=100, label="step 1"),
        run(12, rps=149, rate=150, label="step 2"),
        run(20, rps=224, rate=225, label="step 3"),
        run(90, rps=300, rate=337.5, label="step 4"),
    ]
    k = knee(SPEC, steps, server_cores=2, max_steps=8)
    assert k["held_rate"] == 225 and k["held_achieved_rps"] == 224 and k["broke_at"] == 337.5
    assert k["per_core_rps_at_slo"] == 112 and k["server_cores"] == 2
    assert "p99 90 ms > SLO 50 ms" in k["why_stopped"]
    assert [s["held"] for s in k["steps"]] == [True, True, True, False]
    starved = knee(SPEC, [run(8, rps=100, rate=100), run(9, rps=120, rate=150)], 1, 8)
    assert starved["held_rate"] == 100 and "< 90% of the 150 asked" in starved["why_stopped"]
    never = knee(SPEC, [run(80, rate=100)], 1, 8)
    assert never["held_rate"] is None and never["per_core_rps_at_slo"] is None
    unbroken = knee(SPEC, [run(8, rate=100), run(9, rps=150, rate=150)], 1, 2)
    assert unbroken["held_rate"] == 150 and unbroken["broke_at"] is None
    assert "knee is above 150 req/s" in unbroken["why_stopped"]


def test_run_problems_names_each_broken_rule() -> None:
    assert run_problems(SPEC, run(8)) == []
    assert run_problems(SPEC, run(80, rps=50, failures=2)) == [
        "2 failed requests",
        "p99 80 ms > SLO 50 ms",
        "achieved 50.0 req/s < 90% of the 100 asked",
    ]


def test_markdown_carries_the_verdict_line_the_floor_and_the_spread_table() -> None:
    runs = [run(8, label="run 1"), run(9, label="run 2"), run(10, label="run 3")]
    verdict = judge(SPEC, runs, floor_phase(30), 100)
    rows = [summarize(r, "demo", "/demo") for r in runs]
    floor_row = {
        **summarize(floor_phase(30), "floor", "/floor"),
        "limit_ms": 25.0,
        "noise_fraction": 0.5,
        "too_noisy": True,
    }
    report = BenchReport(
        system="x", route="demo", slo_p99_ms=50, target_p99_ms=None, slo_percentile="p99", rate_asked=100,
        users=3, duration_s=30, routes=runs[1].routes, ratio_to_floor={}, passed=False,
        # /stats may carry counters beside the stage timings (ctr's serving log): they are not a stage table
        stages={**runs[1].stages, "serving_log": {"written": 10, "dropped": 0, "writer_alive": True}},
        verdict=verdict.line, started_at="", verdict_kind=verdict.kind, exit_code=verdict.exit_code,
        runs_counted=3, median_run="run 2", spread=spread(rows), runs=rows, floor=floor_row,
        layout={"note": "pinned: server on CPU 1, locust on CPU 0", "thread_caps": {"OMP_NUM_THREADS": "1"}},
    )  # fmt: skip
    md = render_markdown(report)
    assert "verdict: **TOO NOISY: machine too noisy to judge" in md and "(exit code 3)" in md
    assert "| client p99, ms | 8 | 9 | 10 |" in md
    assert "| server CPU ms / request | 0.500 | 0.500 | 0.500 |" in md
    assert "**too noisy**" in md and "OMP_NUM_THREADS=1" in md
    assert "| run 3 | 100 | 3 |" in md
    assert "## Server-side stages for `/demo`" in md and "serving_log" not in md
