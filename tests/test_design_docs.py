"""The top of every systems/<name>/DESIGN.md: the five-minute answer (short, each point linked to its section,
each command real) and the Mermaid diagram of the running system, whose nodes are the code's own stages.

Diagram convention (the test enforces it, so a renamed step breaks the diagram's test, not only its picture):
node ids are `s_<step>` for a pipeline step (`mlsd <system> <step>`), `st_<stage>` for a stage the server times
(the name passed to `stage(...)` or put in a request's stage timings), `x_<thing>` for anything else (a store, a
registry, a request). Every label starts with the step's or stage's own name.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from infra.config import REPO_ROOT
from mlsd.cli import discover_systems
from tests.doc_checks import check_command, check_links, quoted_commands

SYSTEMS = discover_systems()
MAX_WORDS = 450  # "at most ~400 words", link targets counted as words
KEYWORDS = {"flowchart", "graph", "LR", "TD", "TB", "RL", "BT", "subgraph", "end", "direction"}


def design(name: str) -> Path:
    return REPO_ROOT / SYSTEMS[name].package.replace(".", "/") / "DESIGN.md"


def section(text: str, heading: str) -> str:
    """The body of `## heading` up to the next `## `."""
    start = text.index(f"## {heading}\n") + len(heading) + 4
    end = text.find("\n## ", start)
    return text[start : end if end >= 0 else None]


def mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)


def diagram_nodes(block: str) -> dict[str, str]:
    """node id -> its label (or '' when it is only referenced) in a Mermaid flowchart; subgraph ids excluded.
    Raises AssertionError on a node id outside the s_/st_/x_ convention."""
    labels: dict[str, str] = {}
    subgraphs: set[str] = set()
    for line in block.splitlines():
        line = line.strip()
        if line.startswith("subgraph"):
            subgraphs.add(re.match(r"subgraph\s+(\w+)", line).group(1))
            continue
        for node, label in re.findall(r"\b(\w+)\s*[\[\(\{]+\"([^\"]*)\"", line):
            labels[node] = label
        bare = re.sub(r"\"[^\"]*\"", "", line)  # quoted labels and edge labels
        bare = re.sub(r"[\[\(\{][^\]\)\}]*[\]\)\}]", "", bare)  # shapes
        for token in re.findall(r"[A-Za-z_]\w*", bare):
            if token in KEYWORDS or token in subgraphs:
                continue
            assert re.match(r"(s|st|x)_\w+$", token), (
                f"node '{token}' is neither s_<step>, st_<stage> nor x_<thing>"
            )
            labels.setdefault(token, "")
    return labels


def package_strings(package: str) -> set[str]:
    """Every quoted string literal in a system's Python sources (where the served stages are named)."""
    root = REPO_ROOT / package.replace(".", "/")
    found: set[str] = set()
    for path in root.rglob("*.py"):
        found |= set(re.findall(r"[\"']([a-z_]+)[\"']", path.read_text()))
    return found


def check_diagram(name: str, block: str) -> None:
    """Raise AssertionError unless every node of the diagram is a real step or served stage of `name`."""
    spec = SYSTEMS[name]
    steps = {s.name for s in importlib.import_module(f"{spec.package}.pipeline").STEPS}
    stages = package_strings(spec.package)
    nodes = diagram_nodes(block)
    for node, label in nodes.items():
        kind, _, what = node.partition("_")
        if kind == "s":
            assert what in steps, (
                f"{name}: diagram node '{node}' is not a pipeline step ({', '.join(sorted(steps))})"
            )
        elif kind == "st":
            assert what in stages, f"{name}: diagram node '{node}' names no stage the code times"
        if kind in ("s", "st") and label:
            assert label.split(":")[0].strip() == what, (
                f"{name}: the label of '{node}' must start with '{what}'"
            )
    assert {"s_data", "s_train", "s_serve"} <= set(nodes), f"{name}: the diagram lacks data, train or serve"
    assert any(n.startswith("st_") for n in nodes), f"{name}: the diagram shows no serving stage"


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_design_opens_with_the_answer_and_the_diagram(name: str) -> None:
    text = design(name).read_text()
    level2 = re.findall(r"^## (.+)$", text, flags=re.M)
    assert level2[:2] == ["The answer in five minutes", "The running system"], level2[:3]


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_five_minute_answer_is_short_linked_and_its_commands_are_real(name: str) -> None:
    text = design(name).read_text()
    answer = section(text, "The answer in five minutes")
    assert len(answer.split()) <= MAX_WORDS, f"{len(answer.split())} words"
    points = re.split(r"\n\d+\. ", answer)[1:]
    assert len(points) >= 6, "the answer is a numbered list of points"
    for point in points:
        assert "](#" in point, f"a point links to no section: {point[:60]}..."
    check_links(design(name).relative_to(REPO_ROOT), answer)
    commands = quoted_commands(answer)
    assert commands, "the answer quotes no command"
    for command in commands:
        check_command(command)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_diagram_stages_exist_in_the_pipeline(name: str) -> None:
    blocks = mermaid_blocks(section(design(name).read_text(), "The running system"))
    assert len(blocks) == 1, "one mermaid block"
    check_diagram(name, blocks[0])


def test_the_diagram_check_fails_on_a_stage_that_does_not_exist() -> None:
    good = 'flowchart LR\n  s_data["data"] --> s_train["train"] --> s_serve["serve"] --> st_ann["ann"]\n'
    check_diagram("recsys", good)
    for bad in (
        good.replace("s_train", "s_fit"),  # no such step
        good.replace("st_ann", "st_annoy"),  # no such stage
        good + "  cache --> s_serve\n",  # outside the convention
        good.replace('s_train["train"]', 's_train["fit: the towers"]'),  # label not the step's name
    ):
        with pytest.raises(AssertionError):
            check_diagram("recsys", bad)
