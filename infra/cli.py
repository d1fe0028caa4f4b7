"""`mlsd` — the command line for every system.

mlsd list                      systems, their questions and steps
mlsd <system> <step> [args]    run one step (data, train, index, serve, eval, bench, ...)
mlsd bench <system>            same as `mlsd <system> bench`; `mlsd bench floor` tests the harness alone
mlsd fundamentals <topic>      the coding-round answers
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from infra.system import SystemSpec


class CliError(Exception):
    """A user mistake on the command line: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exits 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def discover_systems() -> dict[str, SystemSpec]:
    """Every package under systems/ that defines SYSTEM = SystemSpec(...)."""
    import systems

    found: dict[str, SystemSpec] = {}
    for mod in pkgutil.iter_modules(systems.__path__):
        if not mod.ispkg:
            continue
        spec = getattr(importlib.import_module(f"systems.{mod.name}"), "SYSTEM", None)
        if isinstance(spec, SystemSpec):
            found[spec.name] = spec
    return dict(sorted(found.items()))


def _fundamentals_main() -> Callable[[list[str]], int] | None:
    try:
        return importlib.import_module("fundamentals.cli").main
    except ModuleNotFoundError as exc:
        if exc.name == "fundamentals.cli":
            return None
        raise


def print_list(found: dict[str, SystemSpec]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mlsd systems", show_lines=False)
    for col in ("system", "question", "steps", "status"):
        table.add_column(col)
    for spec in found.values():
        table.add_row(spec.name, spec.question, ", ".join(spec.steps), spec.status)
    table.add_row("floor", "the bench harness on an empty route (self-test)", "bench", "ready")
    if _fundamentals_main() is not None:
        table.add_row("fundamentals", "coding-round answers", "mlsd fundamentals --help", "")
    Console().print(table)


def run_system_step(spec: SystemSpec, step: str, args: list[str]) -> int:
    if step not in spec.steps:
        raise CliError(f"unknown step '{step}' for {spec.name}; steps: {', '.join(spec.steps)}")
    cli = importlib.import_module(f"{spec.package}.cli")
    return int(cli.main([step, *args]) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except CliError as exc:
        sys.stderr.write(f"mlsd: {exc}\n")
        return 2
    except ValidationError as exc:  # a bad MLSD_* environment variable
        from infra.config import settings_error

        sys.stderr.write(f"mlsd: bad setting: {settings_error(exc)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("mlsd: interrupted\n")
        return 130


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    found = discover_systems()
    names = ", ".join([*found, "floor"])
    head, rest = argv[0], argv[1:]
    if head == "list":
        print_list(found)
        return 0
    if head == "fundamentals":
        fmain = _fundamentals_main()
        if fmain is None:
            raise CliError("fundamentals are not built yet")
        return int(fmain(rest) or 0)
    if head == "bench":
        if not rest:
            raise CliError(f"usage: mlsd bench <system>; systems: {names}")
        target, rest = rest[0], rest[1:]
        if target == "floor":
            from infra.bench.harness import floor_main

            return floor_main(rest)
        if target not in found:
            raise CliError(f"unknown system '{target}'; systems: {names}")
        return run_system_step(found[target], "bench", rest)
    if head not in found:
        raise CliError(f"unknown system '{head}'; systems: {names} (see `mlsd list`)")
    if not rest:
        raise CliError(f"usage: mlsd {head} <step>; steps: {', '.join(found[head].steps)}")
    return run_system_step(found[head], rest[0], rest[1:])


if __name__ == "__main__":
    raise SystemExit(main())
