"""Checks for the vectorised sessionisation: identical to the loop (fundamentals/vectorise.py) on random and on
edge-case frames, input order kept, and no Python loop in the function."""

from __future__ import annotations

import ast
import inspect
import textwrap
from types import ModuleType

import numpy as np
import pandas as pd

from fundamentals.vectorise import SESSION_GAP_S, WINDOW_S, features_loop, make_events
from mlsd.exercises.harness import Check, Failed

NAMES = ("features_vectorised",)
LOOPS = (ast.For, ast.While, ast.AsyncFor, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
SLOW_CALLS = {"iterrows", "itertuples", "apply", "features_loop", "map", "agg", "transform"}


def frame(rows: list[tuple[int, int]], index: list[int] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "ts"]).astype(np.int64)
    return df if index is None else df.set_axis(index)


def compare(m: ModuleType, events: pd.DataFrame, column: str | None, what: str) -> None:
    got = m.features_vectorised(events.copy())
    want = features_loop(events)
    if not isinstance(got, pd.DataFrame):
        raise Failed(f"{what}: returned {type(got).__name__}, not a DataFrame")
    for col in ("session_id", "events_1h"):
        if col not in got.columns:
            raise Failed(f"{what}: no column {col!r} (columns: {list(got.columns)})")
    for col in [column] if column else ["session_id", "events_1h"]:
        g, w = got[col].to_numpy(), want[col].to_numpy()
        if len(g) != len(w) or not np.array_equal(g, w):
            bad = int(np.flatnonzero(g != w)[0]) if len(g) == len(w) else 0
            raise Failed(
                f"{what}: {col} differs from the loop's, e.g. row {bad}: {g[bad]} instead of {w[bad]}"
            )


def identical_on_random_events(m: ModuleType) -> None:
    events = make_events(3000, seed=1)
    compare(m, events, None, "3,000 random events")
    got = m.features_vectorised(events.copy())
    if got[["session_id", "events_1h"]].dtypes.tolist() != [np.int64, np.int64]:
        raise Failed(
            f"dtypes {got[['session_id', 'events_1h']].dtypes.tolist()}, expected int64", "cast to int64"
        )


def sessions_restart_per_user(m: ModuleType) -> None:
    rows = [(0, 0), (0, 5000), (0, 10_000), (1, 20_000), (1, 20_100), (2, 30_000), (2, 40_000)]
    compare(m, frame(rows), "session_id", "users with 3, 1 and 2 sessions")


def gap_is_strictly_more(m: ModuleType) -> None:
    rows = [(0, 0), (0, SESSION_GAP_S), (0, 2 * SESSION_GAP_S + 1)]
    compare(m, frame(rows), "session_id", f"gaps of exactly {SESSION_GAP_S} s and {SESSION_GAP_S + 1} s")


def window_is_half_open(m: ModuleType) -> None:
    rows = [(0, 0), (0, WINDOW_S), (0, WINDOW_S + 1), (0, 2 * WINDOW_S)]
    compare(m, frame(rows), "events_1h", "events exactly one hour apart")


def window_per_user(m: ModuleType) -> None:
    rows = [(0, 0), (1, 10), (0, 20), (1, 30), (2, 40), (0, 50)]
    compare(m, frame(rows), "events_1h", "two users' events interleaved in time")


def keeps_input_order(m: ModuleType) -> None:
    events = make_events(500, seed=2).sample(frac=1.0, random_state=0)
    events.index = np.arange(len(events))[::-1] * 3 + 100
    got = m.features_vectorised(events.copy())
    if not got.index.equals(events.index):
        raise Failed("the output's index (row order) is not the input's")
    compare(m, events, None, "a shuffled frame with its own index")


def no_python_loop(m: ModuleType) -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(m.features_vectorised)))
    for node in ast.walk(tree):
        if isinstance(node, LOOPS):
            raise Failed(f"a {type(node).__name__} at line {node.lineno} of the function")
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in SLOW_CALLS:
                raise Failed(f"a call to {name}() at line {node.lineno} of the function")


CHECKS = [
    Check("identical to the loop on 3,000 random events", identical_on_random_events,
          "sort once by (user, ts) with a stable sort (np.lexsort((ts, user))), compute on the sorted arrays, "
          "scatter back"),
    Check("session numbers restart at 0 for each user", sessions_restart_per_user,
          "a cumsum of session starts runs across users: subtract its value at each user's first row "
          "(and a user's first row is never a session start)"),
    Check("a gap of exactly 30 minutes stays in the session", gap_is_strictly_more,
          "a new session starts after a gap of MORE than 30 minutes: np.diff(ts) > SESSION_GAP_S, not >="),
    Check("an event exactly one hour earlier is outside the window", window_is_half_open,
          "the window is (ts - 1 h, ts]: the first row inside is np.searchsorted(key, key - WINDOW_S, "
          "side='right')"),
    Check("the window counts only the same user's events", window_per_user,
          "search on a combined key (user * span + ts, span larger than any time range), not on ts alone"),
    Check("rows come back in the input's order with the input's index", keeps_input_order,
          "compute in sorted order, then scatter back (out[order] = ...) and assign to the input frame"),
    Check("no Python loop over rows or users", no_python_loop,
          "no for / while / comprehension / iterrows / apply: shifted comparisons, cumsum and searchsorted"),
]  # fmt: skip
