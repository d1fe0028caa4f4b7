"""The load-test harness behind `mlsd bench <system>`: a verdict that holds on a shared 2-core machine.

One bench, in order (loopback only, bounded in time):
1. Pin: the server and locust get disjoint CPUs (on 2 cores, one each) and the server's thread pools are capped
   to its share (OMP/MKL/OpenBLAS/numexpr/Rayon and BenchSpec.thread_env; a variable set in BenchSpec.env wins);
   `--no-pin` runs as the harness did before: unpinned, no caps.
2. Start the server (uvicorn, one worker), wait for /readyz, and load it for `warmup` s, not counted.
3. Floor phase: the empty /floor route alone, at the asked rate with the same users (benchmarks/floor/floor_phase.py).
4. N counted runs of `duration` s each (system route + a 1-user /floor beside it), /stats reset before each;
   or, with `--ramp`, steps of rising rate until the SLO breaks (the knee).
5. Judge (infra.bench.verdict): FAIL on any failed request; TOO NOISY when the floor's p99 is above
   noise_fraction x SLO; else PASS/FAIL on the median of the runs' SLO percentile and achieved rate.
   Exit codes: 0 PASS, 1 FAIL, 3 TOO NOISY (2 is a bad flag).

Every client latency is locust's own (its --json-file totals; its CSV history for the plot); server percentiles
come from the server's /stats; CPU seconds of the server and of locust come from /proc/<pid>/stat (utime +
stime) over each run's load window. Each phase's locust files stay under <out>/runs/ (git-ignored); the median
run's are copied to <out>/locust_stats.csv, locust_stats_history.csv and locust.json.

The flags (`--rate --duration --runs --warmup --floor-duration --ramp --ramp-factor --ramp-steps --pin/--no-pin
--server-cpus --noise-fraction --out`) are infra.bench.flags.BenchFlags; `bench_kwargs(flags)` turns them into
this module's `run_bench` keyword arguments.

report.json under benchmarks/results/<system>/latest/ (latencies in ms, rates in req/s):
  system, route, slo_percentile, slo_p99_ms (the bound on that percentile), target_p99_ms, rate_asked, users,
  duration_s (each run), runs_counted, warmup_s, started_at
  verdict        one line: "PASS: ...", "FAIL: ...", "TOO NOISY: machine too noisy to judge: ..."
  verdict_kind   "PASS" | "FAIL" | "TOO NOISY";  exit_code 0 | 1 | 3;  passed (verdict_kind == "PASS")
  routes         the median run's locust rows by request name: requests, failures, rps, mean_ms, p50_ms, p95_ms,
                 p99_ms, p999_ms, max_ms ("Aggregated" included); median_run names that run
  stages         the median run's /stats: {"/route": {"total" | stage: {count, mean_ms, p50_ms, p95_ms, p99_ms, max_ms}}}
  ratio_to_floor the median run's route over the 1-user floor beside it: {p50, p95, p99}
  runs           one row per counted run: label, rate_asked, users, duration_s, requests, failures, rps,
                 p50_ms, p95_ms, p99_ms, server_p50_ms, server_p95_ms, server_p99_ms, server_cpu_s, locust_cpu_s,
                 server_cpu_ms_per_request, locust_cpu_ms_per_request, locust_cpu_share (of one core)
  spread         {key: {min, median, max}} across the runs for the keys of a run row from p50_ms on
  floor          the floor phase, a run row for the "floor" route plus limit_ms, noise_fraction, too_noisy
                 (null when skipped with --floor-duration 0)
  layout         pinned, cpus_available, server_cpus, locust_cpus, server_cores, thread_caps, note,
                 server_affinity_seen, locust_affinity_seen (read back from the kernel)
  knee           null, or with --ramp: steps (run rows + held, why), held_rate, held_achieved_rps, held_p99_ms,
                 held_slo_ms, broke_at, why_stopped, server_cores, per_core_rps_at_slo (held_achieved_rps / server_cores)
  notes          warnings a reader needs (short runs, a saturated load generator)
  extra          the system's own figures, plus machine: cpus, loadavg_1m_before, loadavg_1m_after
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from infra.bench.flags import BenchFlags, bench_kwargs
from infra.bench.locust_stats import parse_locust_history, parse_locust_json
from infra.bench.machine import CpuLayout, affinity_of, available_cpus, cpu_seconds, pin_to, plan_layout
from infra.bench.report import BenchReport, plot_knee, plot_runs, print_summary, render_markdown
from infra.bench.verdict import (
    RunResult,
    judge,
    knee,
    median_run,
    run_problems,
    server_route,
    spread,
    summarize,
)
from infra.config import REPO_ROOT
from infra.console import console
from infra.steps import ConfigError, OneLineParser, StepError, add_config_flags, config_from_args
from infra.system import BenchSpec

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
FLOOR_PHASE_LOCUSTFILE = "benchmarks/floor/floor_phase.py"
SHORT_RUN_S = 30  # under this, a p99 rests on too few samples to quote
MAX_RAMP_USERS = 64  # locust's own CPU grows with users; one gevent loop handles this many
LOCUST_BUSY = 0.8  # locust above this share of its core may be the bottleneck, not the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a subprocess (on `cpus` when given), stopped on exit; its log goes to a file."""

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        cpus: Sequence[int] | None = None,
    ) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, **env}
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

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
            preexec_fn=pin_to(self.cpus),
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

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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
    locustfile: Path,
    url: str,
    users: int,
    duration_s: int,
    csv_prefix: Path,
    env: dict[str, str],
    log: Path,
    cpus: Sequence[int] | None = None,
) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{duration_s}s", "--host", url,
        "--csv", str(csv_prefix), "--csv-full-history", "--json-file", str(csv_prefix), "--only-summary",
        "--stop-timeout", "5", "--exit-code-on-error", "0", "--loglevel", "WARNING",
    ]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to(cpus),
        )


def _exited(proc: subprocess.Popen) -> bool:
    """Has the process exited? Without reaping it, so that /proc/<pid>/stat still holds its CPU totals."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def _has_rows(history_csv: Path) -> bool:
    try:
        return (
            history_csv.read_bytes().count(b"\n") >= 2
        )  # the header, then locust's first row as load starts
    except OSError:
        return False


def wait_for_locust(
    proc: subprocess.Popen,
    seconds: int,
    label: str,
    history_csv: Path,
    server_pid: int,
    grace_s: float = 90.0,
) -> tuple[float, float, float]:
    """Show a bar until locust exits; (locust CPU s, server CPU s, window s) over the load window.

    The window opens at locust's first stats-history row (its imports are not load) and closes at its exit;
    locust is killed if it outlives seconds + grace_s (the run is bounded)."""
    from rich.progress import Progress  # here, not at the top: only a live bench draws a bar

    t_launch, server_at_launch = time.monotonic(), cpu_seconds(server_pid)
    start: tuple[float, float, float] | None = None  # (time, locust CPU, server CPU) as load starts
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(label, total=seconds)
        while not _exited(proc):
            now = time.monotonic()
            if start is None and _has_rows(history_csv):
                start = (now, cpu_seconds(proc.pid), cpu_seconds(server_pid))
            if now - t_launch > seconds + grace_s:
                proc.kill()
                proc.wait()
                raise TimeoutError(
                    f"{label} still running {now - t_launch:.0f} s after a {seconds} s run; killed"
                )
            bar.update(task, completed=min(seconds, now - (start[0] if start else now)))
            time.sleep(0.1 if start is None else 0.25)
    end = (time.monotonic(), cpu_seconds(proc.pid), cpu_seconds(server_pid))
    proc.wait()
    if start is None:  # it never wrote a row: count its whole life
        start = (t_launch, 0.0, server_at_launch)
    return end[1] - start[1], end[2] - start[2], end[0] - start[0]


@dataclass
class Load:
    """Runs locust against the live server, one call per run: /stats reset first, CPU counted, CSVs kept."""

    server: Server
    spec: BenchSpec
    env: dict[str, str]  # locust's environment: the spec's env and its thread caps
    layout: CpuLayout
    folder: Path  # <out>/runs: one CSV set and log per run (git-ignored)
    locust_affinity_seen: list[int] | None = None

    def __call__(
        self, label: str, rate: float, seconds: int, users: int, floor_only: bool = False
    ) -> RunResult:
        slug = _slug(label)
        prefix = self.folder / slug
        env = {**self.env, "MLSD_BENCH_RATE": str(rate), "MLSD_BENCH_USERS": str(users)}
        locustfile = FLOOR_PHASE_LOCUSTFILE if floor_only else self.spec.locustfile
        token = self.server.env["MLSD_ADMIN_TOKEN"]
        httpx.post(
            f"{self.server.url}/stats/reset", headers={"Authorization": f"Bearer {token}"}, timeout=5
        ).raise_for_status()
        locust_users = (
            max(1, users - 1) if floor_only else users
        )  # the floor phase: the system users, on /floor
        proc = start_locust(
            REPO_ROOT / locustfile,
            self.server.url,
            locust_users,
            seconds,
            prefix,
            env,
            self.folder / f"{slug}.log",
            self.layout.locust_cpus if self.layout.pinned else None,
        )
        if self.locust_affinity_seen is None:
            self.locust_affinity_seen = affinity_of(proc.pid)
        locust_cpu, server_cpu, window = wait_for_locust(
            proc,
            seconds,
            f"{label}: {rate:g} req/s, {users} users",
            Path(f"{prefix}_stats_history.csv"),
            self.server.pid,
        )
        if not self.server.alive():
            raise RuntimeError(f"server died during {label}:\n{self.server.log_tail()}")
        stages = httpx.get(f"{self.server.url}/stats", timeout=10).json()
        totals = Path(f"{prefix}.json")  # written once the run has stopped: every request counted
        if proc.returncode != 0 or not totals.exists():
            log = (self.folder / f"{slug}.log").read_text()[-2000:]
            raise RuntimeError(f"locust exited with code {proc.returncode} during {label}:\n{log}")
        return RunResult(
            label,
            rate,
            locust_users,
            seconds,
            parse_locust_json(totals),
            stages,
            server_cpu,
            locust_cpu,
            window,
        )

    def history(self, label: str) -> dict[str, list[dict[str, float]]]:
        return parse_locust_history(self.folder / f"{_slug(label)}_stats_history.csv")


def _slug(label: str) -> str:
    """A run's file prefix under runs/: "run 1" -> run1, "warm-up" -> warmup."""
    return label.replace(" ", "").replace("-", "")


def ramp_users(spec: BenchSpec, rate: float, users: int) -> int:
    """Users for a ramp step: enough that each system user's interval is at least the SLO, so a user falls
    behind only once latency already breaks it (locust users wait for their answer); at most MAX_RAMP_USERS."""
    return 1 + max(users - 1, min(MAX_RAMP_USERS, math.ceil(rate * spec.slo_p99_ms / 1000.0)))


def _run_line(row: dict[str, Any]) -> str:
    return (
        f"{row['label']}: {row['rps']:.1f} of {row['rate_asked']:g} req/s, p50/p95/p99 {row['p50_ms']:g}/"
        f"{row['p95_ms']:g}/{row['p99_ms']:g} ms (server p99 {row['server_p99_ms']:.2f}), server CPU "
        f"{row['server_cpu_ms_per_request']:.3f} ms/req, locust CPU {row['locust_cpu_ms_per_request']:.3f} "
        f"ms/req ({row['locust_cpu_share']:.0%} of its core), {row['failures']} failed"
    )


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
    runs: int = 3,
    warmup_s: int = 10,
    floor_s: int | None = None,
    ramp: bool = False,
    ramp_factor: float = 1.5,
    ramp_steps: int = 8,
    pin: bool = True,
    server_cpus: int | None = None,
    noise_fraction: float | None = None,
) -> int:
    """Load-test one system, write the report, return the exit code: 0 PASS, 1 FAIL, 3 TOO NOISY."""
    out = out_dir or RESULTS_DIR / system / "latest"
    (out / "runs").mkdir(parents=True, exist_ok=True)
    plan = Plan(
        rate=rate or spec.rate,
        users=users or spec.users,
        duration_s=duration_s or spec.duration_s,
        runs=runs,
        warmup_s=warmup_s,
        floor_s=(duration_s or spec.duration_s) if floor_s is None else floor_s,
        ramp=ramp,
        ramp_factor=ramp_factor,
        ramp_steps=ramp_steps,
    )
    try:
        layout = plan_layout(available_cpus(), pin, server_cpus, spec.thread_env)
    except ValueError as exc:
        raise StepError(str(exc)) from exc
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = os.getloadavg()  # a FAIL on a busy machine reads differently from a regression
    console.print(f"[bold]bench {system}[/]: {spec.app}, {plan.describe(spec.route)}\n{layout.note}")
    measured = measure(spec, plan, layout, out)
    machine = {
        "cpus": os.cpu_count(),
        "loadavg_1m_before": load_before[0],
        "loadavg_1m_after": os.getloadavg()[0],
    }
    fraction = spec.noise_fraction if noise_fraction is None else noise_fraction
    report = build_report(
        system, spec, plan, layout, measured, fraction, started, {**(extra or {}), "machine": machine}
    )
    write_report(out, report, spec, measured, extra_md)
    print_summary(console, report, out)
    return report.exit_code


@dataclass(frozen=True)
class Plan:
    """What one bench asks for: rate, users, how long each phase runs, repeats or a ramp."""

    rate: float
    users: int
    duration_s: int
    runs: int
    warmup_s: int
    floor_s: int
    ramp: bool
    ramp_factor: float
    ramp_steps: int

    def describe(self, route: str) -> str:
        counted = self.ramp_steps if self.ramp else self.runs
        how = (
            f"ramp x{self.ramp_factor:g} per step, up to {self.ramp_steps} steps"
            if self.ramp
            else f"{self.runs} runs"
        )
        total = self.warmup_s + self.floor_s + counted * self.duration_s
        return (
            f"{self.rate:g} req/s on {route}; {how} of {self.duration_s} s after {self.warmup_s} s warm-up and "
            f"{self.floor_s} s floor (at most ~{total / 60:.1f} min of load)"
        )


@dataclass
class Measured:
    """Everything the bench measured with the server up."""

    floor: RunResult | None
    counted: list[RunResult]  # the runs, or the ramp's steps
    histories: list[tuple[str, dict[str, list[dict[str, float]]]]]
    floor_history: dict[str, list[dict[str, float]]] | None
    server_affinity: list[int]
    locust_affinity: list[int] | None


def measure(spec: BenchSpec, plan: Plan, layout: CpuLayout, out: Path) -> Measured:
    """Start the server on its CPUs, warm it up, measure the floor, then the runs or the ramp's steps."""
    bench_env = {"MLSD_BENCH_FLOOR_RATE": str(spec.floor_rate), "PYTHONUNBUFFERED": "1"}
    admin = {"MLSD_ADMIN_TOKEN": secrets.token_urlsafe(16)}  # /stats/reset is an admin route: a token per run
    server_env = {
        **layout.server_env(),
        **spec.env,
        **bench_env,
        **admin,
    }  # the spec's own choices win over the caps
    locust_env = {**layout.locust_env(), **spec.env, **bench_env}
    server_cpus = layout.server_cpus if layout.pinned else None
    with Server(spec.app, server_env, out / "server.log", cpus=server_cpus) as server:
        with console.status("starting server, waiting for /readyz"):
            t0 = time.monotonic()
            server.wait_ready(spec.ready_timeout_s)
        console.print(f"server ready in {time.monotonic() - t0:.1f} s at {server.url}")
        load = Load(server, spec, locust_env, layout, out / "runs")
        if plan.warmup_s:
            load("warm-up", plan.rate, plan.warmup_s, plan.users)
        floor = None
        if plan.floor_s:
            floor = load("floor", plan.rate, plan.floor_s, plan.users, floor_only=True)
            console.print(_run_line(summarize(floor, "floor", "/floor")))
        counted: list[RunResult] = []
        for k in range(plan.ramp_steps if plan.ramp else plan.runs):
            if plan.ramp:
                rate = round(plan.rate * plan.ramp_factor**k, 1)
                counted.append(
                    load(f"step {k + 1}", rate, plan.duration_s, ramp_users(spec, rate, plan.users))
                )
            else:
                counted.append(load(f"run {k + 1}", plan.rate, plan.duration_s, plan.users))
            console.print(_run_line(summarize(counted[-1], spec.route, server_route(spec))))
            if plan.ramp and run_problems(spec, counted[-1]):
                break
        return Measured(
            floor=floor,
            counted=counted,
            histories=[(run.label, load.history(run.label)) for run in counted],
            floor_history=load.history("floor") if floor is not None else None,
            server_affinity=affinity_of(server.pid),
            locust_affinity=load.locust_affinity_seen,
        )


def build_report(
    system: str,
    spec: BenchSpec,
    plan: Plan,
    layout: CpuLayout,
    measured: Measured,
    noise_fraction: float,
    started: str,
    extra: dict[str, Any],
) -> BenchReport:
    """Judge the runs (a ramp: its first step, the asked rate) and gather the report's figures."""
    knee_result = knee(spec, measured.counted, layout.server_cores, plan.ramp_steps) if plan.ramp else None
    judged = measured.counted[:1] if plan.ramp else measured.counted
    verdict = judge(spec, judged, measured.floor, plan.rate, noise_fraction)
    middle = median_run(judged, spec)
    rows = [summarize(run, spec.route, server_route(spec)) for run in judged]
    floor_row = None
    if measured.floor is not None:
        row = summarize(measured.floor, "floor", "/floor")
        limit = verdict.floor_limit_ms
        floor_row = {
            **row,
            "limit_ms": limit,
            "noise_fraction": noise_fraction,
            "too_noisy": row["p99_ms"] > limit,
        }
    run_spread = spread(rows)
    notes = []
    if plan.duration_s < SHORT_RUN_S:
        notes.append(
            f"runs of {plan.duration_s} s: a p99 over so few requests moves a lot; "
            f"use {SHORT_RUN_S} s or more for a figure you quote"
        )
    if run_spread["locust_cpu_share"]["median"] > LOCUST_BUSY:
        notes.append(
            f"locust used {run_spread['locust_cpu_share']['median']:.0%} of its core (median): the load generator "
            "may be the bottleneck, not the server"
        )
    load_before, cpus = extra.get("machine", {}).get("loadavg_1m_before", 0.0), len(layout.available)
    if layout.pinned and load_before > cpus:
        notes.append(
            f"the machine was busy before the bench (load average {load_before:.1f} on {cpus} CPUs): pinned, the "
            "server and locust cannot move away from other jobs, so the client-side tail may be worse than "
            "unpinned; compare with --no-pin"
        )
    if plan.ramp:
        notes.append(
            "ramp steps give each system user an interval of at least the SLO (more users as the rate rises)"
        )
    layout_dict = {
        **layout.as_dict(),
        "server_affinity_seen": measured.server_affinity,
        "locust_affinity_seen": measured.locust_affinity,
    }
    return BenchReport(
        system=system, route=spec.route, slo_p99_ms=spec.slo_p99_ms, target_p99_ms=spec.target_p99_ms,
        slo_percentile=spec.slo_percentile, rate_asked=plan.rate, users=plan.users, duration_s=plan.duration_s,
        routes=middle.routes, stages=middle.stages, ratio_to_floor=ratio_to_floor(middle.routes, spec.route),
        passed=verdict.passed, verdict=verdict.line, started_at=started, extra=extra,
        verdict_kind=verdict.kind, exit_code=verdict.exit_code, runs_counted=len(judged), warmup_s=plan.warmup_s,
        median_run=middle.label, spread=run_spread, runs=rows, floor=floor_row, layout=layout_dict,
        knee=knee_result, notes=notes,
    )  # fmt: skip


def write_report(out: Path, report: BenchReport, spec: BenchSpec, measured: Measured, extra_md: str) -> None:
    """report.json, report.md, latency.png, and the median run's locust files where they always were."""
    prefix = out / "runs" / _slug(report.median_run)
    for suffix in ("_stats.csv", "_stats_history.csv", ".json"):
        shutil.copyfile(f"{prefix}{suffix}", out / f"locust{suffix}")
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2, default=float))
    title = f"mlsd bench {report.system}"
    if report.knee is not None:
        plot_knee(report.knee, spec.slo_p99_ms, spec.slo_percentile, out / "latency.png", title + " --ramp")
    else:
        plot_runs(measured.histories, measured.floor_history, spec.route, out / "latency.png", title)
    (out / "report.md").write_text(render_markdown(report, extra_md))


def ratio_to_floor(routes: dict[str, Any], route: str) -> dict[str, float]:
    """The route's percentiles over the 1-user floor route loaded beside it in the same run."""
    main, floor = routes.get(route), routes.get("floor")
    if not (main and floor and floor.requests):
        return {}
    ratio = {}
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        f = getattr(floor, key)
        ratio[key.removesuffix("_ms")] = getattr(main, key) / f if f > 0 else float("nan")
    return ratio


FLOOR_SPEC = BenchSpec(
    app="infra.bench.demo:build_app",
    locustfile="benchmarks/floor/locustfile.py",
    route="demo",
    slo_p99_ms=50.0,
    target_p99_ms=10.0,
    rate=100.0,
    users=3,
    duration_s=30,
    ready_timeout_s=60,
)


def floor_main(argv: list[str]) -> int:
    """`mlsd bench floor`: the harness on its own demo route (tests the harness, not a system)."""
    p = OneLineParser(prog="mlsd bench floor", description=floor_main.__doc__)
    add_config_flags(p, BenchFlags)
    args = p.parse_args(argv)
    try:
        flags = config_from_args(BenchFlags, args)
    except ConfigError as exc:
        p.error(str(exc))
    try:
        return run_bench("floor", FLOOR_SPEC, **bench_kwargs(flags))
    except StepError as exc:
        sys.stderr.write(f"mlsd bench floor: {exc}\n")
        return 1
