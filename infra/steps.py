"""The step contract every system follows, and the one place that runs steps from the command line.

A system is a list of `Step`s in pipeline order. Each step has a name, a typed config (a dataclass whose
fields become its CLI flags: `mlsd <system> <step> --help` lists them), the artifacts it needs and makes
(names under the system's artifact folder, see `infra.artifacts`), and a function `run(config, artifacts)`.

    STEPS = [
        Step("data", data.run, DataConfig, makes=("events.parquet",)),
        Step("train", train.run, TrainConfig, needs=("events.parquet",), makes=("model/model.onnx",)),
        Step("serve", serve.run, ServeConfig, needs=("model/model.onnx",), in_all=False),
    ]

Running a step first runs whatever is missing: for every artifact it needs that is not on disk, the step
that makes it (and, in turn, what that one needs). `--force` re-runs them all. Fields with the same name flow
from the step asked for to the steps it runs first (`mlsd recsys bench --epochs 2` trains for 2 epochs).

One error policy (`run_cli`): a bad flag is one line and exit 2; a missing artifact, a service that is down or
any `StepError` is one line and exit 1; never a traceback for those.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import logging
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from infra.artifacts import Artifacts, MissingArtifact
from infra.config import ServiceUnavailable, get_settings
from infra.console import console


class StepError(RuntimeError):
    """A step cannot go on; the message says why and what to do. Printed as one line, exit code 1."""


class ConfigError(ValueError):
    """A flag value that parses but makes no sense (raise it in a config's __post_init__). Exit code 2."""


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """The hint after a mistyped `word`: `; did you mean 'epochs'?` naming the closest of `choices`, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exits 2 (no usage dump), suggests the flag meant, and
    takes flags only as written: `--epoch 3` is an error, not `--epochs 3` (allow_abbrev=False)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments: "):
            flags = [a.split("=", 1)[0] for a in message.removeprefix("unrecognized arguments: ").split()]
            unknown = next((a for a in flags if a.startswith("--")), None)
            if unknown is not None:
                known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
                message += did_you_mean(unknown, known)
        sys.stderr.write(f"{self.prog}: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def flag(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
         positional: bool = False) -> Any:  # fmt: skip
    """A config field with its --help text; `factory` for defaults read at run time (settings)."""
    meta = {"help": help, "positional": positional}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class StepConfig:
    """Flags every step has; a step's own config subclasses this with @dataclass."""

    scale: Literal["small", "medium", "large", "xlarge"] = flag(
        help="data scale (default: MLSD_SCALE)", factory=lambda: get_settings().scale
    )
    seed: int = flag(
        help="seed for generators and models (default: MLSD_SEED)", factory=lambda: get_settings().seed
    )
    force: bool = flag(False, "re-run the steps this one needs even when their artifacts exist")

    def variant(self) -> str:
        """The artifact folder's name under the system's (a config reading a real dataset names its own)."""
        return self.scale


@dataclass
class ServeFlags:
    """`--host` and `--port` of a system's `serve` step: its ServeConfig lists this class first among its bases."""

    host: str = flag(
        "127.0.0.1",
        "address to listen on (0.0.0.0: every interface; requests must then name a host in MLSD_ALLOWED_HOSTS)",
    )
    port: int = flag(8000, "port to listen on")

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65_535:
            raise ConfigError(f"--port must be between 1 and 65535, got {self.port}")
        parent = getattr(super(), "__post_init__", None)  # the system's own checks (DataFlags' --data)
        if parent is not None:
            parent()


@dataclass
class DataFlags(StepConfig):
    """`--data <kind>:<file>`: a public dataset instead of the simulator, read into an artifact folder of its own.

    A system subclasses it, names its kinds in `data_kinds` and redeclares `data` with its own --help text.
    """

    data_kinds: ClassVar[tuple[str, ...]] = ()
    data: str | None = flag(None, "a public dataset instead of the simulator: <kind>:<path of the file>")

    def __post_init__(self) -> None:
        if self.data is None:
            return
        kind, _, path = self.data.partition(":")
        if kind not in self.data_kinds or not path:
            raise ConfigError(f"--data must be <kind>:<path> with kind one of {', '.join(self.data_kinds)}, "
                              f"got '{self.data}'")  # fmt: skip
        if not Path(path).is_file():
            raise ConfigError(f"--data: {path} is not a file")

    def data_path(self) -> Path | None:
        return None if self.data is None else Path(self.data.partition(":")[2])

    def data_variant(self, *also: object) -> str:
        """data-<kind>-<hash of the file's resolved path and `also`>: the folder of this file (and these flags)."""
        assert self.data is not None and (path := self.data_path()) is not None
        key = "|".join([str(path.resolve()), *map(str, also)])
        return f"data-{self.data.partition(':')[0]}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


C = TypeVar("C", bound=StepConfig)


@dataclass(frozen=True)
class Step(Generic[C]):
    name: str
    run: Callable[[C, Artifacts], Any]  # returns an exit code (int) or anything else (exit 0)
    config: type[C] = StepConfig  # type: ignore[assignment]
    needs: tuple[str, ...] = ()  # artifacts read (relative to the artifact folder)
    makes: tuple[str, ...] = ()  # artifacts written; the step is "missing" when any of these is absent
    help: str | None = ""  # usually the step function's __doc__ (None when it has none, or under python -OO)
    in_all: bool = True  # part of `mlsd <system> all` (the build path); serve/bench/tools are not
    check: Callable[[C], None] | None = None  # preflight (a service it needs): runs before anything is built


# ------------------------------------------------------------------------------------------ config <-> flags
def _flag_type(tp: Any) -> tuple[Any, tuple[Any, ...] | None, bool]:
    """(argparse type, choices, is_list) for a dataclass field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # X | None -> X
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _flag_type(args[0])
    if origin is Literal:
        literals = typing.get_args(tp)
        return type(literals[0]), literals, False
    if origin in (list, tuple):
        inner, choices, _ = _flag_type(typing.get_args(tp)[0])
        return inner, choices, True
    return tp, None, False


def add_config_flags(parser: argparse.ArgumentParser, config: type) -> None:
    """One flag per dataclass field: `eval_users: int` -> `--eval-users N`; bool -> `--x/--no-x`."""
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        tp, choices, is_list = _flag_type(hints[f.name])
        helptext = f.metadata.get("help", "")
        if (
            f.default is not dataclasses.MISSING
            and f.default not in (None, False, (), "")
            and "default" not in helptext
        ):
            helptext += f" (default: {f.default})"
        if f.metadata.get("positional"):
            parser.add_argument(f.name, type=tp, nargs="?", help=helptext)
            continue
        name = "--" + f.name.replace("_", "-")
        if tp is bool:
            parser.add_argument(name, action=argparse.BooleanOptionalAction, help=helptext)
        elif is_list:
            parser.add_argument(
                name, dest=f.name, type=tp, choices=choices, action="append", help=helptext + " (repeatable)"
            )
        else:  # fmt: skip
            parser.add_argument(name, dest=f.name, type=tp, choices=choices, help=helptext)
        parser.set_defaults(**{f.name: None})


def config_from_args(config: type[C], args: argparse.Namespace) -> C:
    """The config with the flags given on the command line; fields not given keep their defaults."""
    given = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k in {f.name for f in dataclasses.fields(config)}
    }
    return config(**given)  # fmt: skip


def derive(config: type[C], source: StepConfig) -> C:
    """A config for a step run on the way to another: fields with the same name take the source's values."""
    names = {f.name for f in dataclasses.fields(config)}
    return config(**{k: v for k, v in dataclasses.asdict(source).items() if k in names})


# ------------------------------------------------------------------------------------------ running steps
def producers(steps: Sequence[Step], target: Step, art: Artifacts, force: bool) -> list[Step]:
    """The steps to run before `target`, in pipeline order: makers of its missing needs, transitively."""
    maker = {name: s for s in steps for name in s.makes}
    chosen: set[str] = set()

    def visit(step: Step) -> None:
        for need in step.needs:
            src = maker.get(need)
            if src is None or src.name in chosen or src is step:
                continue
            if force or not art.exists(need) or not all(art.exists(m) for m in src.makes):
                visit(src)
                chosen.add(src.name)

    visit(target)
    return [s for s in steps if s.name in chosen]


def run_step(
    steps: Sequence[Step], name: str, config: StepConfig, art: Artifacts, log: Callable[[str], None]
) -> Any:
    """Run one step after whatever it needs that is missing (everything it needs with config.force)."""
    by_name = {s.name: s for s in steps}
    target = by_name[name]
    if target.check is not None:  # fail in a second, not after minutes of building what it needs
        target.check(config)
    for s in producers(steps, target, art, config.force):
        missing = [m for m in s.makes if not art.exists(m)]
        log(f"running `{s.name}` first" + (f" ({missing[0]} is missing)" if missing else " (--force)"))
        s.run(derive(s.config, config), art)
    return target.run(config, art)


def run_all(steps: Sequence[Step], config: StepConfig, art: Artifacts, log: Callable[[str], None]) -> None:
    """Every build step in pipeline order, each from scratch: `mlsd <system> all`."""
    for s in steps:
        if s.in_all:
            log(f"step `{s.name}`")
            s.run(derive(s.config, config), art)


def step_parser(system: str, step: Step) -> OneLineParser:
    doc = (step.help or "").strip()
    p = OneLineParser(prog=f"mlsd {system} {step.name}", description=doc)
    add_config_flags(p, step.config)
    return p


def run_cli(
    system: str, steps: Sequence[Step], argv: Sequence[str], all_config: type[StepConfig] = StepConfig
) -> int:
    """`mlsd <system> <step> [flags]`: parse the step's flags, run it (and what it needs), one error policy."""
    names = [s.name for s in steps] + ["all"]
    if not argv or argv[0] in ("-h", "--help"):
        console.print(f"usage: mlsd {system} <step> [flags]   (mlsd {system} <step> --help)")
        for s in steps:
            console.print(f"  {s.name:<10} {(s.help or '').strip().splitlines()[0] if s.help else ''}")
        console.print(
            f"  {'all':<10} every build step in order: {', '.join(s.name for s in steps if s.in_all)}"
        )
        return 0
    head, rest = argv[0], list(argv[1:])
    if head not in names:
        hint = did_you_mean(head, names) or f"; steps: {', '.join(names)}"
        sys.stderr.write(f"mlsd {system}: unknown step '{head}'{hint} (see `mlsd {system} --help`)\n")
        return 2
    step = Step("all", lambda c, a: None, all_config, help="every build step in order") if head == "all" else next(s for s in steps if s.name == head)  # fmt: skip
    parser = step_parser(system, step)
    args = parser.parse_args(rest)
    try:
        config = config_from_args(step.config, args)
    except ConfigError as exc:
        parser.error(str(exc))
    art = Artifacts(system, config.variant())

    def log(msg: str) -> None:  # in the one log format (infra.logs), like every other line a step logs
        logging.getLogger(f"mlsd.{system}").info(msg)

    try:
        if head == "all":
            run_all(steps, config, art, log)
            return 0
        result = run_step(steps, head, config, art, log)
    except (MissingArtifact, ServiceUnavailable, StepError) as exc:
        sys.stderr.write(f"mlsd {system} {head}: {exc}\n")
        return 1
    except ConfigError as exc:  # an input found bad while running (a data file not in its format)
        sys.stderr.write(f"mlsd {system} {head}: {exc}\n")
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
