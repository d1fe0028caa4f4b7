"""`mlsd exercise list | start <topic> [--dir D] | check <topic> [--dir D]`."""

from __future__ import annotations

import importlib
import sys
from importlib import resources
from pathlib import Path

from rich.table import Table

from infra.console import console
from infra.steps import OneLineParser
from mlsd.exercises import TOPICS
from mlsd.exercises.harness import check_file

DEFAULT_DIR = "mlsd-exercises"


def stub_text(topic: str) -> str:
    return (resources.files("mlsd.exercises.stubs") / f"{TOPICS[topic].module}.py").read_text()


def candidate_path(topic: str, folder: str) -> Path:
    return Path(folder) / f"{TOPICS[topic].module}.py"


def print_topics() -> None:
    table = Table(title="mlsd exercise start <topic>, then mlsd exercise check <topic>")
    for col in ("topic", "write", "the project's answer"):
        table.add_column(col)
    for name, topic in TOPICS.items():
        table.add_row(name, topic.task, topic.original)
    console.print(table)


def start(topic: str, folder: str, force: bool) -> int:
    path = candidate_path(topic, folder)
    if path.exists() and not force:
        sys.stderr.write(f"mlsd exercise: {path} exists; check it with `mlsd exercise check {topic}"
                         f"{'' if folder == DEFAULT_DIR else f' --dir {folder}'}` or pass --force to start over\n")  # fmt: skip
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stub_text(topic))
    where = "" if folder == DEFAULT_DIR else f" --dir {folder}"
    print(f"wrote {path}: fill in the bodies, then run `mlsd exercise check {topic}{where}`")
    return 0


def check(topic: str, folder: str) -> int:
    path = candidate_path(topic, folder)
    if not path.is_file():
        where = "" if folder == DEFAULT_DIR else f" --dir {folder}"
        sys.stderr.write(f"mlsd exercise: no {path}; run `mlsd exercise start {topic}{where}` first\n")
        return 1
    checks = importlib.import_module(f"mlsd.exercises.checks.{TOPICS[topic].module}")
    return check_file(topic, path, checks.CHECKS, checks.NAMES)


def main(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd exercise", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("list", "start", "check"))
    parser.add_argument("topic", nargs="?", help="an exercise topic (`mlsd exercise list`)")
    parser.add_argument(
        "--dir", default=DEFAULT_DIR, help=f"where the exercise files live (default: ./{DEFAULT_DIR})"
    )
    parser.add_argument("--force", action="store_true", help="start: overwrite an existing file")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # OneLineParser wrote the bad flag as one line, or --help printed the usage
        return int(exc.code or 0)
    if args.action == "list":
        print_topics()
        return 0
    if args.topic not in TOPICS:
        what = "a topic is needed" if args.topic is None else f"unknown topic '{args.topic}'"
        sys.stderr.write(f"mlsd exercise {args.action}: {what}; topics: {', '.join(TOPICS)}\n")
        return 2
    if args.action == "start":
        return start(args.topic, args.dir, args.force)
    return check(args.topic, args.dir)
