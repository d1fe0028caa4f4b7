"""What a command prints: one console, the two table shapes every step uses, and one kind of progress.

Progress (`progress`, `progress_bar`) is a rich bar on stderr when stderr is a terminal; piped to a file or
another program, it is one log line when the stage starts and one when it ends, not a bar redrawn with \\r.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

T = TypeVar("T")
console = Console(width=None if sys.stdout.isatty() else 120)
log = logging.getLogger("mlsd.progress")


# Figures named by a unit read at a coarser resolution than a metric's 4 decimals: `seconds 17.3`, `% 77.0`.
ONE_DECIMAL_UNITS = ("seconds", "_s", " s", "(s)", "%")


def _cell(v: Any, name: str = "") -> str:
    """A value as a table shows it; `name` (its row or column) decides the resolution of a float."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if name.strip().lower().endswith(ONE_DECIMAL_UNITS):
            return f"{v:,.1f}"
        return f"{v:,.4g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.4f}"
    return str(v)


def print_values(title: str, values: Mapping[str, Any]) -> None:
    """A two-column table: one named value a row (what a data or train step made)."""
    table = Table(title=title, show_header=False)
    for k, v in values.items():
        table.add_row(str(k), _cell(v, str(k)))
    console.print(table)


def print_rows(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table with a header: the first column names the row (a model, a policy, an index)."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[_cell(v, col) for v, col in zip(row, columns, strict=False)])
    console.print(table)


def markdown_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table as Markdown, for reports that DESIGN.md quotes."""
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    lines += [
        "| " + " | ".join(_cell(v, col) for v, col in zip(row, columns, strict=False)) + " |" for row in rows
    ]
    return "\n".join(lines) + "\n"


class _Bar:
    """What `progress_bar` yields: `update(n)` after n more items are done."""

    def __init__(self, advance: Any) -> None:
        self._advance = advance

    def update(self, n: int = 1) -> None:
        self._advance(n)


@contextmanager
def progress_bar(total: int | None, desc: str, disable: bool = False) -> Iterator[_Bar]:
    """A stage of `total` items: a transient bar on a terminal, a start and an end log line when piped."""
    if disable:
        yield _Bar(lambda n: None)
        return
    err = Console(stderr=True)
    if err.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(desc, total=total)
            yield _Bar(lambda n: bar.advance(task, n))
        return
    done, t0 = [0], time.perf_counter()
    log.info("%s: %s", desc, f"{total:,} to do" if total is not None else "started")
    yield _Bar(lambda n: done.__setitem__(0, done[0] + n))
    log.info("%s: %s done in %.1f s", desc, f"{done[0]:,}", time.perf_counter() - t0)


def progress(items: Iterable[T], desc: str, total: int | None = None, disable: bool = False) -> Iterator[T]:
    """`items`, with progress_bar's bar (or its two log lines) over them."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, desc, disable) as bar:
        for item in items:
            yield item
            bar.update(1)
