"""QUESTIONS.md is mlsd/questions.py rendered; every file, heading and command it names is real."""

from __future__ import annotations

import pytest

from infra.config import REPO_ROOT
from mlsd.cli import main
from mlsd.exercises import TOPICS as EXERCISES
from mlsd.questions import QUESTIONS, ROUNDS, Question, github_anchor, markdown
from tests.doc_checks import check_command, headings


def test_questions_md_is_the_rendering_of_the_module() -> None:
    on_disk = (REPO_ROOT / "QUESTIONS.md").read_text()
    assert on_disk == markdown(), "QUESTIONS.md is stale: run `mlsd questions --markdown > QUESTIONS.md`"


def test_every_round_is_covered_and_known() -> None:
    assert {q.round for q in QUESTIONS} == set(ROUNDS)
    assert len({q.question for q in QUESTIONS}) == len(QUESTIONS), "a question is listed twice"


@pytest.mark.parametrize("q", QUESTIONS, ids=lambda q: q.question[:50])
def test_file_and_heading_exist(q: Question) -> None:
    assert (REPO_ROOT / q.file).is_file(), f"{q.file} does not exist"
    assert q.heading in headings(q.file), f"{q.file} has no heading '{q.heading}'"


@pytest.mark.parametrize("q", QUESTIONS, ids=lambda q: q.question[:50])
def test_answer_is_two_lines_at_most(q: Question) -> None:
    """Two lines of the table: about two sentences, not an essay."""
    assert len(q.answer) <= 420, f"{len(q.answer)} characters"


def test_github_anchor_drops_punctuation_and_keeps_hyphens() -> None:
    assert github_anchor('7. "High offline AUC, flat online lift" — six runnable cases') == (
        "7-high-offline-auc-flat-online-lift--six-runnable-cases"
    )
    assert (
        github_anchor("3a. The online store as a Redis Cluster") == "3a-the-online-store-as-a-redis-cluster"
    )


@pytest.mark.parametrize("q", QUESTIONS, ids=lambda q: q.question[:50])
def test_command_is_a_real_step_or_topic(q: Question) -> None:
    check_command(q.command)
    if q.exercise is not None:
        assert q.exercise in EXERCISES, f"no exercise '{q.exercise}'"


def test_check_command_refuses_what_does_not_exist() -> None:
    for bad in (
        "mlsd recsys nosuch",
        "mlsd nosuch train",
        "mlsd fundamentals nosuch",
        "mlsd ctr eval --nosuch 1",
    ):
        with pytest.raises(AssertionError):
            check_command(bad)


def test_mlsd_questions_prints_the_table_and_searches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["questions"]) == 0
    out = capsys.readouterr().out
    assert "two-tower" in out.lower() and "mlsd ctr skew" in out
    assert main(["questions", "--search", "SKEW"]) == 0
    out = capsys.readouterr().out
    assert "mlsd ctr skew" in out and "mlsd fundamentals softmax" not in out


def test_search_without_a_match_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["questions", "--search", "no-such-word-anywhere"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_mlsd_help_lists_questions_and_exercise(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "mlsd questions [--search WORD]" in out and "mlsd exercise list|start|check" in out


def test_bad_flag_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["questions", "--nosuch"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
