"""The bench harness end to end on its own demo route: real uvicorn, real locust, pinned CPUs, report files.

The SLOs here are set so that each verdict is certain on any machine (a loaded CI runner included); the rules
themselves are tested on synthetic runs in test_bench_verdict.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from infra.bench.harness import FLOOR_SPEC, run_bench
from infra.bench.locust_stats import parse_locust_json
from infra.bench.verdict import FAIL, PASS, TOO_NOISY, RunResult, judge

GENEROUS = replace(FLOOR_SPEC, slo_p99_ms=2000.0)  # PASS on any machine: the floor limit is 1 s
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2


@pytest.mark.slow
def test_floor_bench_pins_repeats_and_reports_the_spread(tmp_path: Path) -> None:
    rc = run_bench("floor", GENEROUS, out_dir=tmp_path, rate=40, runs=2, duration_s=5, warmup_s=1, floor_s=3)
    report = json.loads((tmp_path / "report.json").read_text())
    assert rc == 0 and report["exit_code"] == 0, report["verdict"]
    assert (
        report["verdict_kind"] == PASS
        and report["passed"]
        and report["verdict"].startswith("PASS: median p99")
    )
    assert report["runs_counted"] == 2 and [r["label"] for r in report["runs"]] == ["run 1", "run 2"]
    # the median run's numbers are locust's own: the totals it wrote once the run stopped
    demo, floor = report["routes"]["demo"], report["routes"]["floor"]
    totals = json.loads((tmp_path / "locust.json").read_text())
    assert demo["requests"] == sum(e["num_requests"] for e in totals if e["name"] == "demo")
    assert (tmp_path / "locust_stats.csv").exists() and (tmp_path / "locust_stats_history.csv").exists()
    assert demo["requests"] > 80 and floor["requests"] > 20 and demo["failures"] == 0
    assert {"total", "encode", "score"} <= set(report["stages"]["/demo"])
    for row in report["runs"]:
        assert 36 <= row["rps"] < 50 and row["failures"] == 0
        assert 0 < row["server_p50_ms"] <= row["server_p99_ms"]  # from /stats, reset before each run
        assert 0 < row["server_cpu_ms_per_request"] < 50 and 0 < row["locust_cpu_ms_per_request"] < 50
    assert set(report["spread"]["p99_ms"]) == {"min", "median", "max"}
    # the floor: a 3 s phase at 40 req/s; locust's start-up eats into it on a busy runner
    assert (
        report["floor"]["requests"] > 20
        and report["floor"]["limit_ms"] == 1000
        and not report["floor"]["too_noisy"]
    )
    layout = report["layout"]
    if TWO_CPUS:  # what the kernel reports for the live processes, not only what was asked
        assert layout["pinned"] and layout["server_affinity_seen"] == layout["server_cpus"]
        assert layout["locust_affinity_seen"] == layout["locust_cpus"]
        assert set(layout["server_cpus"]).isdisjoint(layout["locust_cpus"])
        assert layout["thread_caps"]["OMP_NUM_THREADS"] == str(len(layout["server_cpus"]))
    assert report["knee"] is None and report["extra"]["machine"]["cpus"] >= 1
    assert (tmp_path / "latency.png").stat().st_size > 10_000
    md = (tmp_path / "report.md").read_text()
    assert "verdict: **PASS" in md and "## Spread across 2 runs" in md and "## Floor phase" in md
    assert "| demo |" in md and "Ratio to the empty floor route" in md and "runs of 5 s" in md

    # the same real runs, judged against a tighter SLO and a tighter guard: FAIL and TOO NOISY
    runs = [real_run(tmp_path / "runs" / f"run{i}.json", f"run {i}") for i in (1, 2)]
    floor_phase = real_run(tmp_path / "runs" / "floor.json", "floor")
    tight = replace(GENEROUS, slo_p99_ms=0.001, noise_fraction=1e9)
    assert judge(tight, runs, floor_phase, 40).kind == FAIL
    assert judge(GENEROUS, runs, floor_phase, 40, noise_fraction=1e-6).kind == TOO_NOISY


def real_run(totals: Path, label: str) -> RunResult:
    return RunResult(label, 40, 3, 3, parse_locust_json(totals), {})


def test_a_noisy_floor_says_so_and_exits_3(tmp_path: Path) -> None:
    rc = run_bench("floor", GENEROUS, out_dir=tmp_path, rate=40, runs=1, duration_s=2, warmup_s=0, floor_s=3,
                   noise_fraction=1e-6)  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    assert (
        rc == 3 and report["exit_code"] == 3 and report["verdict_kind"] == TOO_NOISY and not report["passed"]
    )
    assert "machine too noisy to judge" in report["verdict"] and report["floor"]["too_noisy"]
    if TWO_CPUS:
        assert report["layout"]["server_affinity_seen"] == report["layout"]["server_cpus"]
    md = (tmp_path / "report.md").read_text()
    assert "**too noisy**" in md and "(exit code 3)" in md


@pytest.mark.slow
def test_ramp_finds_the_highest_rate_that_held_per_server_core_unpinned(tmp_path: Path) -> None:
    spec = replace(FLOOR_SPEC, slo_p99_ms=200.0, noise_fraction=10.0)  # every step holds on any machine
    rc = run_bench("floor", spec, out_dir=tmp_path, rate=20, duration_s=5, warmup_s=0, floor_s=3,
                   ramp=True, ramp_factor=2, ramp_steps=3, pin=False)  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    knee = report["knee"]
    assert rc == 0, report["verdict"]
    assert [s["rate_asked"] for s in knee["steps"]] == [20, 40, 80] and all(s["held"] for s in knee["steps"])
    assert knee["held_rate"] == 80 and knee["broke_at"] is None and "knee is above 80" in knee["why_stopped"]
    assert knee["per_core_rps_at_slo"] == pytest.approx(knee["held_achieved_rps"] / knee["server_cores"])
    assert not report["layout"]["pinned"] and report["layout"]["thread_caps"] == {}
    assert knee["server_cores"] == len(report["layout"]["server_cpus"]) == len(os.sched_getaffinity(0))
    # more users as the rate rises: each system user's interval stays at least the SLO (80 req/s x 0.2 s = 16)
    assert [s["users"] for s in knee["steps"]] == [5, 9, 17]
    md = (tmp_path / "report.md").read_text()
    assert "## Knee" in md and "Highest rate that held: **80 req/s**" in md
    assert (tmp_path / "latency.png").stat().st_size > 10_000
