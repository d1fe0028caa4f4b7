"""What a finished command prints: one console, and the two table shapes every step uses."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 120)


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
