"""The step contract: flags from a config dataclass, "run whatever is missing", one error policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.artifacts import Artifacts, MissingArtifact, atomic_write
from infra.config import ServiceUnavailable
from infra.steps import ConfigError, Step, StepConfig, StepError, derive, flag, run_cli


@dataclass
class TrainConfig(StepConfig):
    epochs: int = flag(3, "training epochs")
    lr: float = flag(0.01, "learning rate")

    def __post_init__(self) -> None:
        if not 1 <= self.epochs <= 50:
            raise ConfigError("--epochs must be between 1 and 50")


@dataclass
class BenchConfig(StepConfig):
    epochs: int = flag(3, "training epochs (when train runs first)")
    rate: float = flag(100.0, "requests/s")
    routes: list[str] = flag(None, "routes to load")


class Toy:
    """A three-step pipeline that records what ran, with which config."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.steps = [
            Step("data", self.data, makes=("events.txt",), help="make the events"),
            Step("train", self.train, TrainConfig, needs=("events.txt",), makes=("model/m.txt",)),
            Step("bench", self.bench, BenchConfig, needs=("model/m.txt",), in_all=False),
        ]

    def data(self, cfg: StepConfig, art: Artifacts) -> None:
        self.calls.append(("data", cfg.scale))
        art.path("events.txt").write_text("e")

    def train(self, cfg: TrainConfig, art: Artifacts) -> None:
        art.require("events.txt", "data")
        self.calls.append(("train", cfg.epochs))
        art.path("model/m.txt").write_text("m")

    def bench(self, cfg: BenchConfig, art: Artifacts) -> int:
        self.calls.append(("bench", (cfg.epochs, cfg.rate, cfg.routes)))
        return 7


def test_a_step_runs_what_it_needs_first_with_shared_flags(isolated_settings: Path) -> None:
    toy = Toy()
    assert (
        run_cli("toy", toy.steps, ["bench", "--epochs", "2", "--rate", "5", "--routes", "a", "--routes", "b"])
        == 7
    )
    assert toy.calls == [("data", "small"), ("train", 2), ("bench", (2, 5.0, ["a", "b"]))]
    assert (isolated_settings / "toy" / "small" / "model" / "m.txt").exists()


def test_present_artifacts_are_not_rebuilt_unless_forced(isolated_settings: Path) -> None:
    toy = Toy()
    run_cli("toy", toy.steps, ["bench"])
    toy.calls.clear()
    run_cli("toy", toy.steps, ["bench"])
    assert [c[0] for c in toy.calls] == ["bench"]
    toy.calls.clear()
    run_cli("toy", toy.steps, ["bench", "--force"])
    assert [c[0] for c in toy.calls] == ["data", "train", "bench"]


def test_all_runs_every_build_step_in_order_at_the_scale_asked(isolated_settings: Path) -> None:
    toy = Toy()
    assert run_cli("toy", toy.steps, ["all", "--scale", "medium"]) == 0
    assert toy.calls == [("data", "medium"), ("train", 3)]
    assert (isolated_settings / "toy" / "medium" / "events.txt").exists()


def test_bad_flags_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    toy = Toy()
    for argv in (
        ["train", "--epochs", "0"],
        ["train", "--epochs", "two"],
        ["train", "--scale", "huge"],
        ["nosuch"],
    ):
        with pytest.raises(SystemExit) as info:
            code = run_cli("toy", toy.steps, argv)
            raise SystemExit(code)
        assert info.value.code == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert toy.calls == []


def test_step_help_lists_its_own_flags_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli("toy", Toy().steps, ["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--epochs" in out and "(default: 3)" in out and "--scale" in out and "--rate" not in out


@pytest.mark.parametrize(
    "error",
    [StepError("the index is stale"), ServiceUnavailable("Redis refused"), MissingArtifact("x missing")],
)
def test_expected_failures_are_one_line_and_exit_1(
    error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(_cfg: StepConfig, _art: Artifacts) -> None:
        raise error

    assert run_cli("toy", [Step("boom", fail)], ["boom"]) == 1
    err = capsys.readouterr().err
    assert err == f"mlsd toy boom: {error}\n"


def test_a_missing_input_names_the_step_that_makes_it(isolated_settings: Path, capsys) -> None:
    toy = Toy()
    train_alone = [toy.steps[1]]  # no producer for events.txt in this list: the step's own check speaks
    assert run_cli("toy", train_alone, ["train"]) == 1
    err = capsys.readouterr().err
    assert "events.txt is missing; run `mlsd toy data --scale small`" in err


def test_derive_copies_same_named_fields_only() -> None:
    bench = BenchConfig(scale="large", seed=4, epochs=9, rate=1.0)
    train = derive(TrainConfig, bench)
    assert (train.scale, train.seed, train.epochs, train.lr) == ("large", 4, 9, 0.01)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "index.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("crash mid-save")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.bin"]
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"


def test_a_preflight_check_fails_before_anything_is_built(isolated_settings: Path, capsys) -> None:
    toy = Toy()

    def redis_down(_cfg: StepConfig) -> None:
        raise ServiceUnavailable(
            "Redis at 127.0.0.1:6379 refused the connection; start it with `redis-server`"
        )

    steps = [
        *toy.steps[:2],
        Step("bench", toy.bench, BenchConfig, needs=("model/m.txt",), in_all=False, check=redis_down),
    ]
    assert run_cli("toy", steps, ["bench"]) == 1
    assert toy.calls == [] and "redis-server" in capsys.readouterr().err
