"""The bench harness end to end on its own demo route: real uvicorn, real locust, report files."""

import json
from pathlib import Path

from infra.bench.harness import FLOOR_SPEC, RouteResult, judge, render_markdown, run_bench


def test_floor_bench_writes_reports_from_locust_csv(tmp_path: Path) -> None:
    rc = run_bench("floor", FLOOR_SPEC, out_dir=tmp_path, duration_s=5, rate=40)
    report = json.loads((tmp_path / "report.json").read_text())
    assert rc == 0, report["verdict"]
    demo, floor = report["routes"]["demo"], report["routes"]["floor"]
    # the numbers are locust's own: the CSV it wrote holds the same request count
    stats_csv = (tmp_path / "locust_stats.csv").read_text()
    assert f"demo,{demo['requests']}," in stats_csv
    assert demo["requests"] > 100 and floor["requests"] > 30 and demo["failures"] == 0
    assert 30 < demo["rps"] < 50
    assert {"total", "encode", "score"} <= set(report["stages"]["/demo"])
    assert (tmp_path / "latency.png").stat().st_size > 10_000
    md = (tmp_path / "report.md").read_text()
    assert "PASS" in md and "| demo |" in md and "Ratio to the empty floor route" in md


def _route(name: str, p99: float, failures: int = 0, rps: float = 100.0) -> RouteResult:
    return RouteResult(name, 1000, failures, rps, 1.0, 1.0, 2.0, p99, p99, p99)


def test_judge_fails_on_slo_failures_and_rate() -> None:
    ok = judge(
        "x", FLOOR_SPEC, {"demo": _route("demo", 5), "floor": _route("floor", 2)}, {}, 100, 3, 5, "", {}
    )
    assert ok.passed and ok.ratio_to_floor["p99"] == 2.5
    slow = judge("x", FLOOR_SPEC, {"demo": _route("demo", 80)}, {}, 100, 3, 5, "", {})
    assert not slow.passed and "SLO" in slow.verdict
    failing = judge("x", FLOOR_SPEC, {"demo": _route("demo", 5, failures=3)}, {}, 100, 3, 5, "", {})
    assert not failing.passed and "3 failed" in failing.verdict
    starved = judge("x", FLOOR_SPEC, {"demo": _route("demo", 5, rps=50)}, {}, 100, 3, 5, "", {})
    assert not starved.passed and "90%" in starved.verdict
    assert "FAIL" in render_markdown(slow)
