"""The shape `mlsd ctr` promises: the steps it lists, per-step --help, one-line errors, where reports go."""

import dataclasses
import typing

import pytest

from infra.config import get_settings
from infra.steps import StepConfig, derive
from systems.ctr import SYSTEM, pipeline
from systems.ctr.config import RESULTS, AllConfig, CtrSettings, EvalConfig, ExperimentConfig, ServeConfig
from systems.ctr.experiment import SCENARIO_NAMES


def test_system_steps_are_the_pipeline_steps_in_order() -> None:
    assert SYSTEM.steps == (*[s.name for s in pipeline.STEPS], "all")
    assert [s.name for s in pipeline.STEPS if s.in_all] == ["data", "train", "eval"]


@pytest.mark.parametrize("step", [*SYSTEM.steps])
def test_every_step_has_help(step: str, mlsd_ctr, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        mlsd_ctr([step, "--help"])
    assert exc.value.code == 0
    assert f"mlsd ctr {step}" in capsys.readouterr().out


def test_a_bad_flag_value_is_one_line_and_exit_2(mlsd_ctr, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        mlsd_ctr(["monitor", "--rows", "10"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rows must be between 1,000 and 1,000,000" in err


def test_a_missing_input_artifact_is_one_line_and_exit_1(mlsd_ctr, monkeypatch, capsys) -> None:
    # the data step "runs" but makes nothing: eval then finds no training rows
    steps = [dataclasses.replace(s, run=lambda c, a: None) if s.name == "data" else s for s in pipeline.STEPS]
    monkeypatch.setattr(pipeline, "STEPS", steps)
    assert mlsd_ctr(["eval"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rows.parquet is missing; run `mlsd ctr data --scale small`" in err


@pytest.mark.parametrize(
    "store, start", [("redis", "redis-server"), ("redis_cluster", "mlsd redis-cluster start")]
)
def test_serve_with_its_online_store_down_is_one_line_and_exit_1(
    mlsd_ctr, monkeypatch, capsys, store, start
) -> None:
    """The ad catalogue is read from the online store at start, so ctr cannot degrade: nothing listens on 6390,
    and `mlsd ctr serve` says so before building or serving anything."""
    monkeypatch.setenv("MLSD_ONLINE_STORE", store)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("MLSD_REDIS_CLUSTER_URL", "redis://127.0.0.1:6390")
    get_settings.cache_clear()
    assert mlsd_ctr(["serve"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.1:6390" in err and f"`{start}" in err, err


def test_a_scale_ctr_does_not_have_is_one_line_and_exit_1(mlsd_ctr, capsys: pytest.CaptureFixture) -> None:
    assert mlsd_ctr(["data", "--scale", "xlarge"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scales: small, medium, large" in err


def test_all_keeps_the_eval_report_out_of_the_repo_and_eval_alone_publishes_it() -> None:
    from_all = derive(EvalConfig, AllConfig(seeds=1))
    assert from_all.seeds == 1 and not from_all.publish
    alone = EvalConfig()
    assert alone.publish and alone.out == RESULTS / "eval"


def test_the_scenario_flag_lists_every_scenario() -> None:
    hints = typing.get_type_hints(ExperimentConfig)
    assert typing.get_args(hints["scenario"]) == ("all", *SCENARIO_NAMES)


def test_serve_alias_comes_from_the_settings_and_goes_to_the_bench_server(monkeypatch) -> None:
    assert ServeConfig().alias == "champion"
    monkeypatch.setenv("MLSD_CTR_ALIAS", "challenger")
    assert ServeConfig().alias == "challenger"
    assert CtrSettings(alias="champion").as_env() == {"MLSD_CTR_ALIAS": "champion"}
    assert issubclass(ServeConfig, StepConfig)
