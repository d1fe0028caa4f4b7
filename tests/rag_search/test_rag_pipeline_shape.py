"""The shape every system shares: the steps `mlsd list` announces are the pipeline's, each has --help, one error
policy (a bad flag is exit 2, a missing artifact exit 1, one line each), and settings are the only MLSD_RAG_ reader."""

from __future__ import annotations

import re

import pytest

from infra.config import REPO_ROOT, env_names
from infra.steps import run_cli
from mlsd.cli import main
from systems.rag_search import SYSTEM
from systems.rag_search.config import SETTINGS
from systems.rag_search.pipeline import STEPS

STEP_NAMES = [s.name for s in STEPS]


def test_system_steps_are_the_pipeline_steps() -> None:
    assert SYSTEM.steps == (*STEP_NAMES, "all")


def test_all_runs_the_build_path_in_order() -> None:
    assert [s.name for s in STEPS if s.in_all] == ["data", "encoder", "index", "train", "eval"]
    assert {s.name for s in STEPS if not s.in_all} == {"tune", "update", "ask", "serve", "bench", "cost"}


def test_every_need_is_made_by_an_earlier_step() -> None:
    made: set[str] = set()
    for step in STEPS:
        assert set(step.needs) <= made, f"{step.name} needs {set(step.needs) - made} before anything makes it"
        made |= set(step.makes)


@pytest.mark.parametrize("step", [*STEP_NAMES, "all"])
def test_every_step_has_help(step, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rag", step, "--help"])
    assert exc.value.code == 0
    assert f"mlsd rag {step}" in capsys.readouterr().out


def test_a_bad_flag_value_is_one_line_and_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rag", "eval", "--limit", "many"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--limit" in err


def test_a_missing_artifact_is_one_line_and_exit_1(capsys) -> None:
    """train without the step that makes its input: the artifact helper names the command to run."""
    train_only = [s for s in STEPS if s.name == "train"]
    assert run_cli("rag", train_only, ["train"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is missing; run `mlsd rag" in err and "Traceback" not in err


def test_an_unsupported_scale_names_the_supported_one(capsys) -> None:
    assert main(["rag", "data", "--scale", "medium"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "small" in err


def test_every_setting_is_documented() -> None:
    names = env_names(SETTINGS)
    assert set(names) == {
        "MLSD_RAG_THREADS",
        "MLSD_RAG_ENCODER",
        "MLSD_RAG_SMOLLM",
        "MLSD_RAG_OPENAI_URL",
        "MLSD_RAG_OPENAI_MODEL",
        "MLSD_RAG_ACCESS_LOG",
        "MLSD_RAG_SEARCH_RATE",
        "MLSD_RAG_OPENAI_DEADLINE_S",
        "MLSD_RAG_DEBUG_RAW",
        "MLSD_RAG_VARIANT",
        "MLSD_RAG_QUESTIONS_FILE",
    }
    assert all(names.values()), names


def test_nothing_reads_mlsd_variables_from_the_environment_but_settings() -> None:
    raw = re.compile(r"os\.environ(?:\.get)?\s*[\[(]\s*[\"']MLSD_|getenv\(\s*[\"']MLSD_")
    files = [
        *(REPO_ROOT / "systems" / "rag_search").rglob("*.py"),
        *(REPO_ROOT / "benchmarks" / "rag").rglob("*.py"),
    ]
    offenders = [str(p.relative_to(REPO_ROOT)) for p in files if raw.search(p.read_text())]
    assert files and not offenders
