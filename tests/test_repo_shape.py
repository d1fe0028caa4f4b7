"""The shape every change keeps: layers, no import cycles, commented lazy imports, links that resolve."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.config import REPO_ROOT

PACKAGES = ("infra", "systems", "fundamentals", "mlsd", "benchmarks")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def python_files() -> Iterator[Path]:
    for pkg in PACKAGES:
        yield from sorted((REPO_ROOT / pkg).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[ast.AST, str, bool]]:
    """(node, imported module, inside a function?) for every import of a project module."""
    tree = ast.parse(path.read_text())
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function |= {id(n) for n in ast.walk(node) if n is not node}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield node, name, id(node) in in_function


def test_infra_imports_nothing_above_it() -> None:
    bad = [
        f"{p.relative_to(REPO_ROOT)}:{node.lineno} imports {name}"
        for p in (REPO_ROOT / "infra").rglob("*.py")
        for node, name, _ in imports(p)
        if name.split(".")[0] != "infra"
    ]
    assert not bad, "infra/ is the bottom layer:\n" + "\n".join(bad)


def test_systems_do_not_import_each_other() -> None:
    bad = []
    for p in (REPO_ROOT / "systems").rglob("*.py"):
        if p.name == "__main__.py":  # `python -m systems.<pkg>`: an entry point that hands over to `mlsd`
            continue
        own = module_name(p).split(".")[:2]
        for node, name, _ in imports(p):
            parts = name.split(".")
            if parts[0] == "systems" and len(parts) > 1 and parts[:2] != own:
                bad.append(f"{p.relative_to(REPO_ROOT)}:{node.lineno} imports {name}")
            if parts[0] in ("mlsd", "fundamentals"):
                bad.append(f"{p.relative_to(REPO_ROOT)}:{node.lineno} imports {name}")
    assert not bad, "\n".join(bad)


def _resolve(name: str, modules: set[str]) -> str | None:
    """`from a.b import c` may name module a.b.c or attribute c of a.b: the longest module that exists."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_no_import_cycles_even_through_imports_inside_functions() -> None:
    files = {module_name(p): p for p in python_files()}
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in files.items():
        tree_imports = list(imports(path))
        for node, name, _ in tree_imports:
            targets = [name]
            if isinstance(node, ast.ImportFrom):
                targets = [f"{name}.{a.name}" for a in node.names]
            for t in targets:
                dst = _resolve(t, modules)
                if (
                    dst and dst != mod and not mod.startswith(dst + ".")
                ):  # a package's own __init__ is no edge
                    graph[mod].add(dst)
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join([*stack[stack.index(n) :], n]))
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_import_inside_a_function_says_why() -> None:
    """STYLE.md: imports at the top; one inside a function carries a comment (same line or the line above)."""
    bad = []
    for p in python_files():
        lines = p.read_text().splitlines()
        for node, name, inside in imports(p):
            if inside:
                here, above = lines[node.lineno - 1], lines[node.lineno - 2] if node.lineno > 1 else ""
                if "#" not in here and not above.strip().startswith("#"):
                    bad.append(f"{p.relative_to(REPO_ROOT)}:{node.lineno} {name}")
    assert not bad, "imports inside functions without a reason:\n" + "\n".join(bad)


def markdown_files() -> list[Path]:
    skip = {".venv", ".mlsd", ".git", "node_modules"}
    return [p for p in sorted(REPO_ROOT.rglob("*.md")) if not skip & set(p.relative_to(REPO_ROOT).parts)]


@pytest.mark.parametrize("md", markdown_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(md: Path) -> None:
    broken = []
    for target in LINK.findall(md.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if path and not (md.parent / path).exists():
            broken.append(target)
    assert not broken, f"{md.relative_to(REPO_ROOT)} links to missing files: {broken}"
