"""Checks the Markdown tests share: a document's headings, its in-page and file links, and whether a quoted
`mlsd ...` command is a real step (with flags it accepts), fundamentals topic or exercise, as the CLI discovers
them. Used by tests/mlsd/test_questions.py (QUESTIONS.md), tests/test_design_docs.py (the top of each DESIGN.md)
and tests/test_interview_docs.py (each INTERVIEW.md)."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

from fundamentals.cli import TOPICS as FUNDAMENTALS
from infra.config import REPO_ROOT
from infra.steps import step_parser
from mlsd.cli import discover_systems
from mlsd.exercises import TOPICS as EXERCISES
from mlsd.questions import github_anchor

HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
LINK = re.compile(r"\]\(([^)\s]+)\)")
COMMAND = re.compile(r"`(mlsd [^`]+)`")


def headings(path: str | Path) -> set[str]:
    """Every Markdown heading of a file, outside fenced code blocks."""
    found, fenced = set(), False
    for line in (REPO_ROOT / path).read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            found.add(m.group(1))
    return found


def anchors(path: str | Path) -> set[str]:
    return {github_anchor(h) for h in headings(path)}


def check_links(doc: str | Path, text: str) -> None:
    """Raise AssertionError unless every relative link in `text` (written in `doc`) names a file that exists and,
    after a #, one of that file's headings."""
    doc = REPO_ROOT / doc
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.exists(), f"{doc.relative_to(REPO_ROOT)}: the link ({target}) names a missing file"
        if anchor:
            assert anchor in anchors(path), (
                f"{doc.relative_to(REPO_ROOT)}: the link ({target}) names no heading of {path.name}"
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


def quoted_commands(text: str) -> list[str]:
    """Every `mlsd ...` command quoted in backticks in a Markdown text."""
    return COMMAND.findall(text)
