"""`mlsd`: the command line for every system (see USAGE); the one module that imports every system."""

# For maintainers: this is the composition root. Layers: infra/ is the bottom (imports nothing above it);
# systems/ and fundamentals/ import infra; this module imports them all. System packages are imported lazily:
# `mlsd list` reads only their __init__.py.

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

from pydantic import AliasChoices

import systems
from fundamentals.cli import main as fundamentals_main
from infra.bench.harness import floor_main
from infra.bench.settings import BenchSettings
from infra.config import REPO_ROOT, TEST_ENV, Settings, check_environment, env_fields
from infra.console import print_rows
from infra.logs import configure_logging
from infra.redis_cluster import main as redis_cluster_main
from infra.steps import StepConfig, did_you_mean, run_cli
from infra.system import SystemSpec
from mlsd.demo import main as demo_main
from mlsd.exercises.cli import main as exercise_main
from mlsd.questions import main as questions_main

USAGE = """\
mlsd — runnable answers to ML system-design interview questions

usage: mlsd <command> [flags]

  mlsd list                             the systems, the question each answers, their steps
  mlsd <system> <step> [flags]          run one step, and first whatever it needs that is missing
  mlsd <system> <step> --help           that step's flags
  mlsd <system> all [--scale small]     every build step in order (data ... eval)
  mlsd <system> serve [--host --port]   the system's HTTP server (docs at http://127.0.0.1:8000/docs)
  mlsd demo [system ...]                the interviewer's consoles on 127.0.0.1 (built first when missing)
  mlsd bench <system>                   load-test a system (same as `mlsd <system> bench`); `mlsd bench floor`
                                        tests the harness alone
  mlsd fundamentals <topic>             the coding-round answers (`mlsd fundamentals` lists the topics)
  mlsd questions [--search WORD]        every interview question answered here: the section and the command
  mlsd exercise list|start|check        practise a coding-round task from a stub, checked with hints
  mlsd settings                         every MLSD_* environment variable, its default and meaning
  mlsd redis-cluster start|stop|status  a local Redis Cluster for MLSD_ONLINE_STORE=redis_cluster

Start with `mlsd list`, then e.g. `mlsd fraud all --scale small` and `mlsd fraud serve`."""

# What `mlsd list`'s status column means (SystemSpec.status).
STATUS_MEANING = {
    "working": "every step runs end to end, tested; the README's numbers come from its commands",
    "in progress": "some steps are still missing or untested",
}


class CliError(Exception):
    """A user mistake on the command line: printed as one line, exit code 2."""


def discover_systems() -> dict[str, SystemSpec]:
    """Every package under systems/ that defines SYSTEM = SystemSpec(...)."""
    found: dict[str, SystemSpec] = {}
    for mod in pkgutil.iter_modules(systems.__path__):
        if not mod.ispkg:
            continue
        spec = getattr(importlib.import_module(f"systems.{mod.name}"), "SYSTEM", None)
        if isinstance(spec, SystemSpec):
            found[spec.name] = spec
    return dict(sorted(found.items()))


def settings_classes(found: dict[str, SystemSpec]) -> list[type]:
    """The shared settings and each system's own (its config.SETTINGS), for the environment check."""
    classes: list[type] = [Settings]
    for spec in found.values():
        cls = getattr(importlib.import_module(f"{spec.package}.config"), "SETTINGS", None)
        if cls is not None:
            classes.append(cls)
    return [*classes, BenchSettings]


def print_list(found: dict[str, SystemSpec]) -> None:
    rows = [(s.name, s.question, ", ".join(s.steps), s.status) for s in found.values()]
    rows.append(("floor", "the bench harness on an empty route (self-test)", "bench", "working"))
    rows.append(("fundamentals", "coding-round answers", "mlsd fundamentals --help", ""))
    print_rows("mlsd systems", ("system", "question", "steps", "status"), rows)
    print("system: the name `mlsd <system> <step>` takes; steps: `mlsd <system> <step>` runs one (and what it "
          "needs first), in pipeline order; `all` runs the build steps")  # fmt: skip
    for status in sorted({r[3] for r in rows if r[3]}):
        print(f"status {status}: {STATUS_MEANING.get(status, '')}")


def settings_rows(classes: list[type]) -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every environment variable any settings class reads."""
    rows = []
    for cls in classes:
        for env, field in env_fields(cls):
            default = "" if field.default is None else str(field.default).replace(str(REPO_ROOT), "<repo>")
            alias = field.validation_alias  # REDIS_URL and MLFLOW_TRACKING_URI keep their usual names too
            name = " or ".join(map(str, alias.choices)) if isinstance(alias, AliasChoices) else env
            rows.append((name, default, field.description or ""))
    return rows + [(env, "", meaning) for env, meaning in TEST_ENV.items()]


def print_settings(classes: list[type], markdown: bool = False) -> None:
    """The README's settings table, from the code: `mlsd settings` (`--markdown` for the README itself)."""
    rows = settings_rows(classes)
    if markdown:
        print("| variable | default | meaning |\n|---|---|---|")
        for env, default, meaning in rows:
            meaning = meaning.replace("<", "&lt;").replace(">", "&gt;")
            print(f"| `{env}` | {f'`{default}`' if default else ''} | {meaning} |")
        return
    print_rows("mlsd settings (environment variables)", ("variable", "default", "meaning"), rows)


def run_system_step(spec: SystemSpec, argv: list[str]) -> int:
    """Import the system's pipeline (its heavy imports happen here, not at `mlsd list`) and run the step."""
    pipeline = importlib.import_module(f"{spec.package}.pipeline")
    return run_cli(spec.name, pipeline.STEPS, argv, getattr(pipeline, "ALL_CONFIG", StepConfig))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        found = discover_systems()
        check_environment(settings_classes(found))
        configure_logging()
        return _dispatch(argv, found)
    except CliError as exc:
        sys.stderr.write(f"mlsd: {exc}\n")
        return 2
    except ValueError as exc:  # check_environment: an unknown or malformed MLSD_* variable
        sys.stderr.write(f"mlsd: bad setting: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("mlsd: interrupted\n")
        return 130


def _dispatch(argv: list[str], found: dict[str, SystemSpec]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    names = ", ".join([*found, "floor"])
    head, rest = argv[0], argv[1:]
    if head == "list":
        print_list(found)
        return 0
    if head == "redis-cluster":
        return redis_cluster_main(rest)
    if head == "settings":
        print_settings(settings_classes(found), markdown="--markdown" in rest)
        return 0
    if head == "fundamentals":
        return int(fundamentals_main(rest) or 0)
    if head == "questions":
        return questions_main(rest)
    if head == "exercise":
        return exercise_main(rest)
    if head == "demo":
        return demo_main(rest)
    if head == "bench":
        if not rest:
            raise CliError(f"usage: mlsd bench <system>; systems: {names}")
        target, rest = rest[0], rest[1:]
        if target == "floor":
            return floor_main(rest)
        if target not in found:
            raise CliError(
                f"unknown system '{target}'{did_you_mean(target, [*found, 'floor'])}; systems: {names}"
            )
        return run_system_step(found[target], ["bench", *rest])
    if head not in found:
        commands = [
            *found,
            "list",
            "settings",
            "fundamentals",
            "questions",
            "exercise",
            "demo",
            "bench",
            "redis-cluster",
            "help",
        ]
        hint = did_you_mean(head, commands)
        raise CliError(f"unknown system '{head}'{hint}; systems: {names} (see `mlsd list`, `mlsd --help`)")
    if not rest:
        raise CliError(f"usage: mlsd {head} <step>; steps: {', '.join(found[head].steps)}")
    return run_system_step(found[head], rest)


if __name__ == "__main__":
    raise SystemExit(main())
