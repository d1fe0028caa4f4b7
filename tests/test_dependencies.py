"""Every third-party package the code imports is declared in pyproject.toml's dependencies (or the cpu/gpu
extras), not merely installed as something else's dependency."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from infra.config import REPO_ROOT

OURS = {"infra", "systems", "mlsd", "fundamentals", "benchmarks"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;~!]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_every_imported_package_is_a_declared_dependency() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = _names(project["dependencies"]) | _names(extras["cpu"]) | _names(extras["gpu"])
    distributions = packages_distributions()
    undeclared: dict[str, str] = {}
    for folder in ("infra", "systems", "mlsd", "fundamentals"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in OURS or top in sys.stdlib_module_names:
                        continue
                    dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                    if not dists & declared:
                        undeclared.setdefault(top, str(path.relative_to(REPO_ROOT)))
    assert not undeclared, f"imported but not declared in pyproject.toml (package: first file): {undeclared}"
