"""What a system tells the CLI about itself: its name, question, steps and benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BenchSpec:
    """A locust load test of one system's main route, with the floor route loaded in the same run.

    `infra.bench.harness.run_bench` runs it: a floor phase, then N runs judged on their median."""

    app: str  # "package.module:factory" — uvicorn calls it with --factory
    locustfile: str  # path from the repo root
    route: str  # the locust request name whose latency the SLO judges
    slo_p99_ms: float  # the SLO bound, in ms, on the percentile named by slo_percentile
    target_p99_ms: float | None = None
    slo_percentile: str = "p99"  # "p50", "p95" or "p99": which locust percentile the SLO judges
    rate: float = 100.0  # requests/s on the system route, driven by constant_throughput
    users: int = 4  # few users: locust's own overhead grows with users on 2 cores
    duration_s: int = 60  # seconds of each counted run
    floor_rate: float = 20.0  # requests/s on the empty /floor route, for the ratio
    ready_timeout_s: float = 300.0
    env: dict[str, str] = field(default_factory=dict)  # extra env for the server and locust
    # too noisy to judge when the empty floor route's own p99 is above this fraction of the SLO
    noise_fraction: float = 0.5
    server_route: str | None = None  # the path /stats files the route under (default "/" + route)
    thread_env: tuple[str, ...] = ()  # variables the server reads as its thread count (capped when pinned)


@dataclass(frozen=True)
class SystemSpec:
    """A system as `mlsd` sees it, declared in the package's __init__.py (kept light: `mlsd list` imports it).

    The package also has `pipeline.py` with STEPS (a list of `infra.steps.Step`, in pipeline order) and
    `config.py` with SETTINGS (a pydantic-settings class with the system's own MLSD_<NAME>_ prefix); the
    `mlsd` command imports them only when it runs a step. A test checks `steps` against STEPS."""

    name: str  # the CLI name: `mlsd <name> <step>`
    package: str  # "systems.recsys_two_tower"
    question: str  # the interview question it answers
    steps: tuple[str, ...]  # the names of pipeline.STEPS, in order (plus `all`)
    status: str = "in progress"
