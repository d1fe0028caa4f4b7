"""systems/<name>/INTERVIEW.md, the interviewer's guide: its sections are there, every follow-up says what a
strong answer says, the red flags, the console knob and a command that shows it; every `mlsd` command quoted is a
real step, topic or exercise, every `pytest` target exists, and every link names a file and heading that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from infra.config import REPO_ROOT
from mlsd.cli import discover_systems
from tests.doc_checks import check_command, check_links, headings, quoted_commands

SYSTEMS = discover_systems()
SECTIONS = (
    "The question",
    "The five-minute answer",
    "Follow-ups, in the order they usually come",
    "Scoring rubric",
)
PARTS = ("**Strong answer:**", "**Red flags:**", "**Console:**", "**Show it:**")
PYTEST = re.compile(r"`(pytest [^`]+)`")


def guide(name: str) -> Path:
    return REPO_ROOT / SYSTEMS[name].package.replace(".", "/") / "INTERVIEW.md"


def follow_ups(text: str) -> list[tuple[str, str]]:
    """(heading, body) of every ### follow-up."""
    body = text.split("## Follow-ups, in the order they usually come", 1)[1].split("\n## ", 1)[0]
    chunks = re.split(r"^### (.+)$", body, flags=re.M)[1:]
    return list(zip(chunks[::2], chunks[1::2], strict=True))


def check_pytest_target(command: str) -> None:
    """Raise AssertionError unless `pytest path[::test]` names a test file and, if given, a test in it."""
    target = shlex.split(command)[1]
    path, _, test = target.partition("::")
    assert (REPO_ROOT / path).is_file(), f"`{command}`: no file {path}"
    if test:
        assert f"def {test}(" in (REPO_ROOT / path).read_text(), f"`{command}`: no test {test} in {path}"


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_guide_has_its_sections(name: str) -> None:
    found = headings(guide(name).relative_to(REPO_ROOT))
    for heading in SECTIONS:
        assert heading in found, f"{name}: INTERVIEW.md has no '## {heading}'"


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_every_follow_up_has_answer_red_flags_knob_and_command(name: str) -> None:
    items = follow_ups(guide(name).read_text())
    assert len(items) >= 6, f"{name}: {len(items)} follow-ups"
    for heading, body in items:
        for part in PARTS:
            assert part in body, f"{name}, '{heading}': no {part}"
        console = body.split("**Console:**", 1)[1].split("\n- ", 1)[0].strip()
        assert console.startswith((f"{name} console:", "none")), (
            f"{name}, '{heading}': console line '{console}'"
        )
        shown = body.split("**Show it:**", 1)[1]
        assert quoted_commands(shown) or PYTEST.search(shown), f"{name}, '{heading}': no command shows it"


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_every_command_is_real_and_every_link_exists(name: str) -> None:
    text = guide(name).read_text()
    for command in quoted_commands(text):
        check_command(command)
    for command in PYTEST.findall(text):
        check_pytest_target(command)
    check_links(guide(name).relative_to(REPO_ROOT), text)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_rubric_separates_hire_lean_hire_no_hire(name: str) -> None:
    rubric = guide(name).read_text().split("## Scoring rubric", 1)[1]
    header = next(line for line in rubric.splitlines() if line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == ["hire", "lean hire", "no hire"]


def test_the_checks_refuse_what_does_not_exist() -> None:
    with pytest.raises(AssertionError):
        check_pytest_target("pytest tests/fraud_edge/test_fraud_bundle.py::test_no_such_test")
    with pytest.raises(AssertionError):
        check_pytest_target("pytest tests/no_such_file.py")
    with pytest.raises(AssertionError):
        check_links("systems/ctr/INTERVIEW.md", "[x](DESIGN.md#no-such-heading)")
    with pytest.raises(AssertionError):
        check_command("mlsd fraud eval --threshold 0.3")
