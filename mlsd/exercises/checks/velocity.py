"""Checks for the velocity count: the batch function equals the fraud system's batch aggregates
(systems/fraud_edge/features/velocity.py) and a brute-force count; the window is half-open and per card; the
input order is kept; no Python loop; the online counter equals the batch count on the same stream."""

from __future__ import annotations

import ast
import inspect
import textwrap
from types import ModuleType

import numpy as np
import pandas as pd

from mlsd.exercises.harness import Check, Failed
from systems.fraud_edge.features.velocity import WINDOWS, batch_raw_aggregates

NAMES = ("velocity_counts", "VelocityCounter")
LOOPS = (ast.For, ast.While, ast.AsyncFor, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def stream(n: int = 1500, cards: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Time-ordered events over 6 hours, distinct timestamps: ~5 events of a card in 10 minutes."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.choice(6 * 3600, size=n, replace=False)).astype(np.int64)
    card = rng.integers(0, cards, n).astype(np.int64)
    return ts, card


def brute_force(ts: np.ndarray, card: np.ndarray, w: int) -> np.ndarray:
    same = card[:, None] == card[None, :]  # (n, n)
    inside = (ts[None, :] > ts[:, None] - w) & (ts[None, :] <= ts[:, None])
    return (same & inside).sum(1)


def fraud_counts(ts: np.ndarray, card: np.ndarray, w: int) -> np.ndarray:
    name = next(n for n, s in WINDOWS.items() if s == w)
    n = len(ts)
    frame = pd.DataFrame({"ts": ts, "card_id": card, "terminal_id": np.zeros(n, np.int64),
                          "amount_cents": np.ones(n, np.int64), "lat_e6": np.zeros(n, np.int64),
                          "lon_e6": np.zeros(n, np.int64)})  # fmt: skip
    return batch_raw_aggregates(frame)[f"card_cnt_{name}"]


def counts(m: ModuleType, ts: np.ndarray, card: np.ndarray, w: int) -> np.ndarray:
    got = np.asarray(m.velocity_counts(ts.copy(), card.copy(), w))
    if got.shape != ts.shape:
        raise Failed(
            f"returned shape {got.shape}, expected {ts.shape}", "one count per event, in the input's order"
        )
    return got


def compare(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if not np.array_equal(got, want):
        i = int(np.flatnonzero(got != want)[0])
        raise Failed(f"{what}: event {i} counted {got[i]}, expected {want[i]}")


def matches_fraud_batch(m: ModuleType) -> None:
    ts, card = stream()
    for w in (WINDOWS["10m"], WINDOWS["1h"]):
        want = fraud_counts(ts, card, w)
        assert np.array_equal(want, brute_force(ts, card, w))  # the fraud system's count is the definition
        compare(counts(m, ts, card, w), want, f"1,500 events, window {w} s")


def half_open(m: ModuleType) -> None:
    ts, card = np.array([0, 600, 601, 1200], dtype=np.int64), np.zeros(4, dtype=np.int64)
    compare(
        counts(m, ts, card, 600), brute_force(ts, card, 600), "one card at 0, 600, 601, 1200 s, window 600 s"
    )


def per_card(m: ModuleType) -> None:
    ts, card = np.arange(0, 60, 10, dtype=np.int64), np.array([0, 1, 0, 1, 2, 0], dtype=np.int64)
    compare(counts(m, ts, card, 600), brute_force(ts, card, 600), "three cards interleaved")


def input_order(m: ModuleType) -> None:
    ts, card = stream(seed=1)
    perm = np.random.default_rng(2).permutation(len(ts))
    compare(counts(m, ts[perm], card[perm], 3600), brute_force(ts, card, 3600)[perm], "the stream shuffled")


def no_python_loop(m: ModuleType) -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(m.velocity_counts)))
    for node in ast.walk(tree):
        if isinstance(node, LOOPS):
            raise Failed(f"a {type(node).__name__} at line {node.lineno} of velocity_counts")


def online_equals_batch(m: ModuleType) -> None:
    ts, card = stream(seed=3)
    for w in (600, 3600):
        counter = m.VelocityCounter(w)
        got = np.array([counter.add(int(c), int(t)) for c, t in zip(card, ts, strict=True)])
        compare(got, brute_force(ts, card, w), f"online, window {w} s")


CHECKS = [
    Check("batch counts equal the fraud system's (10 min and 1 h windows)", matches_fraud_batch,
          "sort by (card, ts); key = card * span + ts; start = np.searchsorted(key, key - w, side='right'); "
          "count = position - start + 1"),
    Check("an event exactly w seconds earlier is outside the window", half_open,
          "the window is (ts - w, ts]: an event exactly w seconds earlier is out (side='right' on key - w; "
          "online, evict while oldest <= ts - w)"),
    Check("only the same card's events count", per_card,
          "search a combined (card, ts) key, with cards further apart than any time span, not ts alone"),
    Check("counts come back in the input's order", input_order,
          "compute in (card, ts) order, then scatter back: out[order] = counts"),
    Check("the batch function has no Python loop", no_python_loop,
          "no for / while / comprehension in velocity_counts: argsort (or lexsort) and one searchsorted"),
    Check("the online counter gives the batch count for every event", online_equals_batch,
          "keep a deque of timestamps per card; on add, append, evict from the left while oldest <= ts - w, "
          "return the length"),
]  # fmt: skip
