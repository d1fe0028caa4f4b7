"""The flags of every bench step: a system's bench config subclasses BenchFlags and passes them on in one line.

@dataclass
class BenchConfig(BenchFlags):
    rate: float | None = flag(200.0, "requests/s on /recommend")   # a system may set its own defaults

run_bench("recsys", spec, **bench_kwargs(cfg), extra=extra, extra_md=md)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.steps import ConfigError, StepConfig, flag


@dataclass
class BenchFlags(StepConfig):
    """Load, repeats, the floor phase, the knee and CPU pinning: `mlsd <system> bench --help` lists them."""

    rate: float | None = flag(None, "requests/s on the system route (default: the system's)")
    duration: int | None = flag(
        None, "seconds of each counted run (default: the system's; 30 or more for a figure you quote)"
    )
    runs: int = flag(3, "counted runs; the verdict judges their median")
    warmup: int = flag(10, "seconds of uncounted load before the floor phase and the runs")
    floor_duration: int | None = flag(
        None,
        "seconds of the floor phase, the empty /floor route at the same rate (default: --duration; 0 skips it and the noise guard)",
    )
    ramp: bool = flag(False, "knee mode: step the rate up by --ramp-factor until the SLO breaks")
    ramp_factor: float = flag(1.5, "--ramp: each step asks this many times the previous rate")
    ramp_steps: int = flag(8, "--ramp: at most this many steps")
    pin: bool = flag(True, "pin the server and locust to disjoint CPUs and cap the server's thread pools")
    server_cpus: int | None = flag(None, "--pin: CPUs for the server (default: half of them, at least 1)")
    noise_fraction: float | None = flag(
        None,
        "too noisy to judge when the floor's p99 is above this fraction of the SLO (default: the system's, 0.5)",
    )
    out: Path | None = flag(None, "report folder (default: benchmarks/results/<system>/latest)")

    def __post_init__(self) -> None:
        _between("duration", self.duration, 1, 3600)
        _between("runs", self.runs, 1, 20)
        _between("warmup", self.warmup, 0, 600)
        _between("floor_duration", self.floor_duration, 0, 3600)
        _between("ramp_steps", self.ramp_steps, 1, 30)
        _between("server_cpus", self.server_cpus, 1, 4096)
        if self.rate is not None and self.rate <= 0:
            raise ConfigError(f"--rate must be positive, got {self.rate:g}")
        if self.ramp_factor <= 1:
            raise ConfigError(f"--ramp-factor must be above 1, got {self.ramp_factor:g}")
        if self.noise_fraction is not None and self.noise_fraction <= 0:
            raise ConfigError(f"--noise-fraction must be positive, got {self.noise_fraction:g}")


def _between(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise ConfigError(f"--{name.replace('_', '-')} must be between {low:g} and {high:g}, got {value:g}")


def bench_kwargs(flags: BenchFlags) -> dict[str, Any]:
    """The keyword arguments of `run_bench` these flags stand for (a system adds extra= and extra_md=)."""
    return {
        "out_dir": flags.out,
        "duration_s": flags.duration,
        "rate": flags.rate,
        "runs": flags.runs,
        "warmup_s": flags.warmup,
        "floor_s": flags.floor_duration,
        "ramp": flags.ramp,
        "ramp_factor": flags.ramp_factor,
        "ramp_steps": flags.ramp_steps,
        "pin": flags.pin,
        "server_cpus": flags.server_cpus,
        "noise_fraction": flags.noise_fraction,
    }
