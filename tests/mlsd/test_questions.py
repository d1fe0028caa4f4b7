"""QUESTIONS.md is mlsd/questions.py rendered; every file, heading and command it names is real."""

from __future__ import annotations

import importlib
import re
import shlex

import pytest

from fundamentals.cli import TOPICS as FUNDAMENTALS
from infra.config import REPO_ROOT
from infra.steps import step_parser
from mlsd.cli import discover_systems, main
from mlsd.exercises import TOPICS as EXERCISES
from mlsd.questions import QUESTIONS, ROUNDS, Question, github_anchor, markdown

HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def headings(path: str) -> set[str]:
    """Every Markdown heading of a file, outside fenced code blocks."""
    found, fenced = set(), False
    for line in (REPO_ROOT / path).read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            found.add(m.group(1))
    return found


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


def check_command(command: str) -> None:
    """Raise AssertionError unless `command` is a step (with flags it accepts), a fundamentals topic or an exercise,
    as the CLI itself discovers them."""
    words = shlex.split(command)
    assert words[0] == "mlsd" and len(words) >= 3, f"'{command}' is not `mlsd <what> <which>`"
    head, target, flags = words[1], words[2], words[3:]
    if head == "fundamentals":
        assert target in FUNDAMENTALS, f"no fundamentals topic '{target}'"
        return
    if head == "exercise":
        assert target in ("start", "check") and flags and flags[0] in EXERCISES, command
        return
    systems = discover_systems()
    assert head in systems, f"'{head}' is neither a system ({', '.join(systems)}) nor fundamentals"
    assert target in systems[head].steps, f"'{target}' is not a step of {head}: {systems[head].steps}"
    if target == "all":
        return
    steps = importlib.import_module(f"{systems[head].package}.pipeline").STEPS
    step = next(s for s in steps if s.name == target)
    try:
        step_parser(head, step).parse_args(flags)
    except SystemExit as exc:
        raise AssertionError(f"`{command}`: flags the step does not take") from exc


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
