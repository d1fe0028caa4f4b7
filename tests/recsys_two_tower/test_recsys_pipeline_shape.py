"""The step contract for recsys: the steps mlsd lists are the pipeline's, every step has --help, a bad flag is
one line and exit 2, a missing input artifact or an unsupported scale is one line and exit 1.

These call `infra.steps.run_cli` with the pipeline's STEPS, which is what `mlsd recsys ...` runs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from infra.config import get_settings
from infra.steps import run_cli
from systems.recsys_two_tower import SYSTEM, pipeline
from systems.recsys_two_tower.config import SETTINGS, BenchConfig
from systems.recsys_two_tower.serve import serving_scale


def _cli(*argv: str) -> int:
    return run_cli("recsys", pipeline.STEPS, list(argv), pipeline.ALL_CONFIG)


def test_system_steps_are_the_pipeline_steps() -> None:
    assert SYSTEM.steps == (*(s.name for s in pipeline.STEPS), "all")


def test_all_is_the_build_path_in_order() -> None:
    built = [s.name for s in pipeline.STEPS if s.in_all]
    assert built == ["data", "features", "train", "index", "rank", "eval", "cross"]


def test_every_step_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in SYSTEM.steps:
        with pytest.raises(SystemExit) as exc:
            _cli(name, "--help")
        assert exc.value.code == 0, name
        assert f"mlsd recsys {name}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [("train", "--epochs", "two"), ("train", "--epochs", "0"), ("index", "--nlist", "0"),
     ("data", "--scale", "huge"), ("bench", "--rate", "-1"), ("eval", "--no-such-flag")],
)  # fmt: skip
def test_bad_flag_is_one_line_exit_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _cli(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mlsd recsys {argv[0]}:"), err


def test_unknown_step_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("prepare") == 2
    assert "unknown step 'prepare'" in capsys.readouterr().err


def test_missing_input_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval` on an empty data dir, with the steps that would make its input turned into no-ops."""
    noop = [s if s.name == "eval" else replace(s, run=lambda c, a: None) for s in pipeline.STEPS]
    monkeypatch.setattr(pipeline, "STEPS", noop)
    assert _cli("eval", "--scale", "small") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is missing" in err and "--scale small" in err, err


def test_catalog_scales_reach_ten_million() -> None:
    """The catalog curve's scales (issue 11): medium 1M (the bench default), large 5M, xlarge >= 10M."""
    from systems.recsys_two_tower.config import SCALES  # here: only this test reads the scale table

    assert SCALES["medium"].n_videos == 1_000_000 and SCALES["large"].n_videos == 5_000_000
    assert SCALES["xlarge"].n_videos >= 10_000_000


def test_bench_defaults_to_medium_and_tells_the_server_its_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BenchConfig().scale == "medium"
    monkeypatch.setenv("MLSD_SCALE", "small")
    get_settings.cache_clear()
    assert serving_scale() == "small"  # nothing recsys-specific set: the shared MLSD_SCALE
    monkeypatch.setenv("MLSD_RECSYS_SCALE", "medium")  # what `mlsd recsys bench` sets for its server
    assert SETTINGS().scale == "medium" and serving_scale() == "medium"
