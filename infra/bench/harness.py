"""The load-test harness behind `mlsd bench <system>`.

Starts the system's server with uvicorn in a subprocess, waits for /readyz, runs locust headless
(the system's route and the empty /floor route in the same run), stops everything, and writes
report.json, report.md and latency.png under benchmarks/results/<system>/latest/. Every latency in
the report is parsed from locust's own CSV files; the per-stage breakdown comes from the server's /stats.
Loopback only, bounded in time.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from infra.config import REPO_ROOT
from infra.steps import OneLineParser
from infra.system import BenchSpec

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
PERCENTILE_COLUMNS = {"p50": "50%", "p95": "95%", "p99": "99%", "p99.9": "99.9%", "max": "100%"}


@dataclass
class RouteResult:
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


@dataclass
class BenchReport:
    system: str
    route: str
    slo_p99_ms: float
    target_p99_ms: float | None
    slo_percentile: str
    rate_asked: float
    users: int
    duration_s: int
    routes: dict[str, RouteResult]
    stages: dict[str, Any]
    ratio_to_floor: dict[str, float]
    passed: bool
    verdict: str
    started_at: str
    extra: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _num(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def parse_locust_stats(path: Path) -> dict[str, RouteResult]:
    """Rows of locust's <prefix>_stats.csv, by request name (the 'Aggregated' row included)."""
    results: dict[str, RouteResult] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            results[row["Name"]] = RouteResult(
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=_num(row["Requests/s"]),
                mean_ms=_num(row["Average Response Time"]),
                p50_ms=_num(row["50%"]),
                p95_ms=_num(row["95%"]),
                p99_ms=_num(row["99%"]),
                p999_ms=_num(row["99.9%"]),
                max_ms=_num(row["Max Response Time"]),
            )
    return results


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


def plot_latency(series: dict[str, list[dict[str, float]]], names: list[str], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name in names:
        pts = series.get(name, [])
        if not pts:
            continue
        t = [p["t"] for p in pts]
        ax1.plot(t, [p["p50"] for p in pts], label=f"{name} p50")
        ax1.plot(t, [p["p99"] for p in pts], linestyle="--", label=f"{name} p99")
        ax2.plot(t, [p["rps"] for p in pts], label=name)
    ax1.set_ylabel("latency, ms (locust, 10 s window)")
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    ax1.set_title(title)
    ax2.set_ylabel("requests/s")
    ax2.set_xlabel("seconds into the run")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


class Server:
    """uvicorn in a subprocess, stopped on exit; its log goes to a file."""

    def __init__(self, app: str, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        cmd = [
            sys.executable, "-m", "uvicorn", self.app, "--factory",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "warning", "--no-access-log", "--workers", "1",
        ]  # fmt: skip
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2.0)
                if r.status_code == 200:
                    return
                last = r.json().get("message", r.text)
                if r.status_code == 503 and "loading" not in last and last:
                    raise RuntimeError(f"server failed to load: {last}")
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"server not ready after {timeout_s:.0f} s ({last}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def start_locust(
    locustfile: Path, url: str, users: int, duration_s: int, csv_prefix: Path, env: dict[str, str], log: Path
) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{duration_s}s", "--host", url,
        "--csv", str(csv_prefix), "--csv-full-history", "--only-summary",
        "--stop-timeout", "5", "--exit-code-on-error", "0", "--loglevel", "WARNING",
    ]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(
            cmd, env={**os.environ, **env}, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
        )


def wait_with_progress(proc: subprocess.Popen, seconds: int, label: str, grace_s: float = 90.0) -> None:
    """Show a bar while proc runs; kill it if it outlives seconds + grace_s (the run is bounded)."""
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=seconds)
        t0 = time.monotonic()
        while proc.poll() is None:
            elapsed = time.monotonic() - t0
            if elapsed > seconds + grace_s:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"{label} still running {elapsed:.0f} s after a {seconds} s run; killed")
            bar.update(task, completed=min(seconds, elapsed))
            time.sleep(0.5)


def run_bench(
    system: str,
    spec: BenchSpec,
    *,
    out_dir: Path | None = None,
    duration_s: int | None = None,
    rate: float | None = None,
    users: int | None = None,
    extra: dict[str, Any] | None = None,
    extra_md: str = "",
) -> int:
    """Load-test one system; write the report; return 0 when the SLO held with zero failures."""
    from rich.console import Console

    console = Console()
    out = out_dir or RESULTS_DIR / system / "latest"
    out.mkdir(parents=True, exist_ok=True)
    duration = duration_s or spec.duration_s
    rate_asked = rate or spec.rate
    n_users = users or spec.users
    env = {
        **spec.env,
        "MLSD_BENCH_RATE": str(rate_asked),
        "MLSD_BENCH_USERS": str(n_users),
        "MLSD_BENCH_FLOOR_RATE": str(spec.floor_rate),
        "PYTHONUNBUFFERED": "1",
    }
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = os.getloadavg()  # a FAIL on a busy machine reads differently from a regression
    console.print(
        f"[bold]bench {system}[/]: {spec.app} — {rate_asked:g} req/s on {spec.route} for {duration} s"
    )
    with Server(spec.app, env, out / "server.log") as server:
        with console.status("starting server, waiting for /readyz"):
            t0 = time.monotonic()
            server.wait_ready(spec.ready_timeout_s)
        console.print(f"server ready in {time.monotonic() - t0:.1f} s at {server.url}")
        httpx.post(f"{server.url}/stats/reset", timeout=5)
        locust = start_locust(
            REPO_ROOT / spec.locustfile,
            server.url,
            n_users,
            duration,
            out / "locust",
            env,
            out / "locust.log",
        )
        wait_with_progress(locust, duration, f"locust: {n_users} users")
        stages = httpx.get(f"{server.url}/stats", timeout=10).json()
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"server died during the run:\n{server.log_tail()}")

    load_after = os.getloadavg()
    routes = parse_locust_stats(out / "locust_stats.csv")
    history = parse_locust_history(out / "locust_stats_history.csv")
    machine = {"cpus": os.cpu_count(), "loadavg_1m_before": load_before[0], "loadavg_1m_after": load_after[0]}
    report = judge(
        system,
        spec,
        routes,
        stages,
        rate_asked,
        n_users,
        duration,
        started,
        {**(extra or {}), "machine": machine},
    )
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2, default=float))
    plot_latency(history, [spec.route, "floor"], out / "latency.png", f"mlsd bench {system}")
    (out / "report.md").write_text(render_markdown(report, extra_md))
    print_summary(console, report, out)
    return 0 if report.passed else 1


def judge(
    system: str,
    spec: BenchSpec,
    routes: dict[str, RouteResult],
    stages: dict[str, Any],
    rate_asked: float,
    users: int,
    duration: int,
    started: str,
    extra: dict[str, Any],
) -> BenchReport:
    main = routes.get(spec.route)
    floor = routes.get("floor")
    problems = []
    if main is None or main.requests == 0:
        problems.append(f"no requests recorded on {spec.route}")
    else:
        observed = getattr(main, f"{spec.slo_percentile}_ms")
        if observed > spec.slo_p99_ms:
            problems.append(f"{spec.slo_percentile} {observed:g} ms > SLO {spec.slo_p99_ms:g} ms")
        if main.rps < 0.9 * rate_asked:
            problems.append(f"achieved {main.rps:.1f} req/s < 90% of the {rate_asked:g} asked")
    total_failures = sum(r.failures for n, r in routes.items() if n != "Aggregated")
    if total_failures:
        problems.append(f"{total_failures} failed requests")
    ratio = {}
    if main and floor and floor.requests:
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            f = getattr(floor, key)
            ratio[key.removesuffix("_ms")] = getattr(main, key) / f if f > 0 else float("nan")
    passed = not problems
    verdict = "PASS" if passed else "FAIL: " + "; ".join(problems)
    return BenchReport(
        system=system, route=spec.route, slo_p99_ms=spec.slo_p99_ms, target_p99_ms=spec.target_p99_ms,
        slo_percentile=spec.slo_percentile,
        rate_asked=rate_asked, users=users, duration_s=duration, routes=routes, stages=stages,
        ratio_to_floor=ratio, passed=passed, verdict=verdict, started_at=started, extra=extra,
    )  # fmt: skip


def render_markdown(report: BenchReport, extra_md: str = "") -> str:
    lines = [
        f"# mlsd bench {report.system}",
        "",
        f"- started: {report.started_at}; {report.duration_s} s; {report.users} locust users "
        f"(1 on /floor); asked {report.rate_asked:g} req/s on `{report.route}`",
        f"- SLO: {report.slo_percentile} <= {report.slo_p99_ms:g} ms"
        + (f"; target p99 <= {report.target_p99_ms:g} ms" if report.target_p99_ms else ""),
        f"- verdict: **{report.verdict}**",
        "- machine: {cpus} CPUs, load average {loadavg_1m_before:.2f} before / {loadavg_1m_after:.2f} after the run".format(
            **report.extra.get(
                "machine", {"cpus": "?", "loadavg_1m_before": float("nan"), "loadavg_1m_after": float("nan")}
            )
        ),
        "",
        "## Client-side latency (locust CSV; locust rounds times under 100 ms to whole ms)",
        "",
        "| route | requests | failures | req/s | mean ms | p50 | p95 | p99 | p99.9 | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report.routes.items():
        lines.append(
            f"| {name} | {r.requests} | {r.failures} | {r.rps:.1f} | {r.mean_ms:.2f} | {r.p50_ms:g} | "
            f"{r.p95_ms:g} | {r.p99_ms:g} | {r.p999_ms:g} | {r.max_ms:.1f} |"
        )
    if report.ratio_to_floor:
        lines += [
            "",
            "Ratio to the empty floor route in the same run: "
            + ", ".join(f"{k} x{v:.2f}" for k, v in report.ratio_to_floor.items()),
        ]
    for route, stages in report.stages.items():
        lines += [
            "",
            f"## Server-side stages for `{route}` (ms, from /stats)",
            "",
            "| stage | count | mean | p50 | p95 | p99 | max |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, s in stages.items():
            lines.append(
                f"| {name} | {s['count']} | {s['mean_ms']:.3f} | {s['p50_ms']:.3f} | {s['p95_ms']:.3f} | "
                f"{s['p99_ms']:.3f} | {s['max_ms']:.3f} |"
            )
    if extra_md:
        lines += ["", extra_md.strip()]
    lines += ["", "![latency over time](latency.png)", ""]
    return "\n".join(lines)


def print_summary(console: Any, report: BenchReport, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"mlsd bench {report.system} (locust, ms)")
    for col in ("route", "requests", "fail", "req/s", "p50", "p95", "p99", "max"):
        table.add_column(col, justify="right" if col != "route" else "left")
    for name, r in report.routes.items():
        table.add_row(
            name, str(r.requests), str(r.failures), f"{r.rps:.1f}",
            f"{r.p50_ms:g}", f"{r.p95_ms:g}", f"{r.p99_ms:g}", f"{r.max_ms:.1f}",
        )  # fmt: skip
    console.print(table)
    if report.ratio_to_floor:
        console.print(
            "ratio to floor: " + ", ".join(f"{k} x{v:.2f}" for k, v in report.ratio_to_floor.items())
        )
    style = "green" if report.passed else "red"
    console.print(f"[{style}]{report.verdict}[/] — report: {out / 'report.md'}")


FLOOR_SPEC = BenchSpec(
    app="infra.bench.demo:build_app",
    locustfile="benchmarks/floor/locustfile.py",
    route="demo",
    slo_p99_ms=50.0,
    target_p99_ms=10.0,
    rate=100.0,
    users=3,
    duration_s=20,
    ready_timeout_s=60,
)


def floor_main(argv: list[str]) -> int:
    """`mlsd bench floor`: the harness on its own demo route (tests the harness, not a system)."""
    p = OneLineParser(prog="mlsd bench floor", description=floor_main.__doc__)
    p.add_argument("--duration", type=int, default=FLOOR_SPEC.duration_s, help="seconds of load")
    p.add_argument("--rate", type=float, default=FLOOR_SPEC.rate, help="req/s on /demo")
    p.add_argument("--out", type=Path, default=None, help="report folder")
    args = p.parse_args(argv)
    if args.duration < 1 or args.duration > 3600:
        p.error("--duration must be between 1 and 3600 seconds")
    if args.rate <= 0:
        p.error("--rate must be positive")
    return run_bench("floor", FLOOR_SPEC, out_dir=args.out, duration_s=args.duration, rate=args.rate)
