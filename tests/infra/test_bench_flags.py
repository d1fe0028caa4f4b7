"""BenchFlags: the flags every bench step shares, their checks, and the run_bench call they stand for."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.bench.flags import BenchFlags, bench_kwargs
from infra.bench.harness import floor_main, run_bench
from infra.steps import ConfigError, Step, StepConfig, add_config_flags, config_from_args, flag, step_parser


def parse(argv: list[str], config: type[BenchFlags] = BenchFlags) -> BenchFlags:
    parser = step_parser("x", Step("bench", lambda c, a: 0, config))
    return config_from_args(config, parser.parse_args(argv))


def test_defaults_are_three_runs_after_a_warm_up_pinned() -> None:
    f = parse([])
    assert isinstance(f, StepConfig)
    assert (f.runs, f.warmup, f.ramp, f.pin, f.rate, f.duration) == (3, 10, False, True, None, None)


def test_every_flag_reaches_run_bench() -> None:
    f = parse(["--rate", "50", "--duration", "40", "--runs", "5", "--warmup", "0", "--floor-duration", "0",
               "--ramp", "--ramp-factor", "2", "--ramp-steps", "4", "--no-pin", "--noise-fraction", "0.8",
               "--out", "/tmp/r"])  # fmt: skip
    kwargs = bench_kwargs(f)
    assert kwargs == {
        "out_dir": Path("/tmp/r"), "duration_s": 40, "rate": 50.0, "runs": 5, "warmup_s": 0, "floor_s": 0,
        "ramp": True, "ramp_factor": 2.0, "ramp_steps": 4, "pin": False, "server_cpus": None,
        "noise_fraction": 0.8,
    }  # fmt: skip
    assert set(kwargs) <= set(inspect.signature(run_bench).parameters)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--runs", "0"], "--runs must be between 1 and 20"),
        (["--duration", "0"], "--duration must be between 1 and 3600"),
        (["--rate", "-1"], "--rate must be positive"),
        (["--ramp-factor", "1"], "--ramp-factor must be above 1"),
        (["--noise-fraction", "0"], "--noise-fraction must be positive"),
    ],
)
def test_a_bad_value_is_a_config_error(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(argv)


def test_a_system_subclasses_it_with_its_own_defaults() -> None:
    @dataclass
    class RecsysBench(BenchFlags):
        rate: float | None = flag(200.0, "requests/s on /recommend")
        users: int = flag(20_000, "known users the load draws from")

    f = parse(["--runs", "2"], RecsysBench)
    assert (f.rate, f.users, f.runs) == (200.0, 20_000, 2)
    assert bench_kwargs(f)["rate"] == 200.0


def test_floor_main_reports_a_bad_flag_in_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        floor_main(["--runs", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--runs must be between 1 and 20" in err


def test_the_flags_are_command_line_flags() -> None:
    p = argparse.ArgumentParser()
    add_config_flags(p, BenchFlags)
    text = p.format_help()
    for name in ("--rate", "--duration", "--runs", "--warmup", "--floor-duration", "--ramp", "--ramp-factor",
                 "--ramp-steps", "--pin", "--no-pin", "--server-cpus", "--noise-fraction", "--out"):  # fmt: skip
        assert name in text
