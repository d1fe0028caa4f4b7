"""The shape every system shares: SYSTEM.steps is STEPS, each step has --help, one-line errors, typed settings."""

from __future__ import annotations

import dataclasses

import pytest

from infra.bench.settings import BenchSettings
from infra.config import Settings, check_environment
from systems.fraud_edge import SYSTEM
from systems.fraud_edge import pipeline as fraud_pipeline
from systems.fraud_edge.config import SCALES, FraudSettings
from systems.fraud_edge.pipeline import STEPS

STEP_NAMES = [s.name for s in STEPS]


def test_system_steps_are_the_pipeline_steps_plus_all() -> None:
    assert list(SYSTEM.steps) == [*STEP_NAMES, "all"]
    assert STEP_NAMES == ["data", "train", "eval", "serve", "score", "bench"]
    assert [s.name for s in STEPS if s.in_all] == ["data", "train", "eval"]  # `all` = the build path


def test_every_need_is_made_by_an_earlier_step() -> None:
    made: set[str] = set()
    for step in STEPS:
        assert set(step.needs) <= made, f"{step.name} needs {set(step.needs) - made}, made by no earlier step"
        made |= set(step.makes)


@pytest.mark.parametrize("step", [*STEP_NAMES, "all"])
def test_every_step_has_help(step, fraud_cli, capsys) -> None:
    assert fraud_cli(step, "--help") == 0
    assert f"mlsd fraud {step}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "--seed", "zero"],
        ["data", "--cards", "0"],
        ["train", "--hidden", "0"],
        ["score", "--amount", "10"],  # --card is required
        ["score", "--card", "c1", "--amount", "10", "--lat", "123"],
        ["serve", "--store", "disk"],
        ["bench", "--duration", "0"],
        ["all", "--scale", "huge"],
    ],
)
def test_a_bad_flag_value_is_one_line_and_exit_2(argv, fraud_cli, capsys) -> None:
    assert fraud_cli(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mlsd fraud {argv[0]}:")


def test_a_missing_input_is_one_line_and_exit_1(fraud_cli, capsys, monkeypatch) -> None:
    """eval in an empty data dir: the runner would make its inputs, so data and train are stubbed to make nothing."""
    stubbed = [
        dataclasses.replace(s, run=lambda cfg, art: None) if s.in_all and s.name != "eval" else s
        for s in STEPS
    ]
    monkeypatch.setattr(fraud_pipeline, "STEPS", stubbed)
    assert fraud_cli("eval") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is missing; run `mlsd fraud data --scale small`" in err[0]


def test_an_unsupported_scale_names_the_supported_ones(fraud_cli, capsys) -> None:
    assert fraud_cli("data", "--scale", "xlarge") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"supported: {', '.join(SCALES)}" in err[0]


def test_fraud_settings_are_checked_with_the_others(monkeypatch) -> None:
    classes = [Settings, FraudSettings, BenchSettings]
    # every variable has a description: the README table is made from them
    assert all(f.description for f in FraudSettings.model_fields.values())
    for name in ("MLSD_FRAUD_STORE", "MLSD_FRAUD_NAMESPACE", "MLSD_FRAUD_BUNDLE_KEY", "MLSD_FRAUD_STREAM",
                 "MLSD_FRAUD_ACCESS_LOG"):  # fmt: skip
        monkeypatch.setenv(name, "memory" if name.endswith("STORE") else "0")
    check_environment(classes)  # every MLSD_FRAUD_* variable the system reads is known
    monkeypatch.setenv("MLSD_FRAUD_STORE", "disk")
    with pytest.raises(ValueError, match="MLSD_FRAUD_STORE"):
        check_environment(classes)
    monkeypatch.setenv("MLSD_ACCESS_LOG", "0")  # the old, unprefixed name is now unknown
    with pytest.raises(ValueError, match="unknown setting MLSD_ACCESS_LOG"):
        check_environment(classes)
