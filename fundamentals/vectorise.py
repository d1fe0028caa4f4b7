"""Vectorise a slow per-user pandas feature: sessionisation and a rolling 1-hour event count.

Per event (user_id, ts): session_id = the user's session number (a new session starts after a gap of more than
30 minutes), events_1h = how many of the user's events fall in (ts - 1h, ts], this one included.
Four versions with identical output: iterrows, a Python loop over plain lists, groupby().apply with pandas
per group, and a
vectorised one: sort once by (user, ts), detect session starts with a shifted comparison, number sessions with
a cumulative sum, and count the window with one np.searchsorted on a combined (user, ts) key.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import pandas as pd

from infra.steps import OneLineParser

SESSION_GAP_S = 30 * 60
WINDOW_S = 60 * 60


def make_events(n: int, seed: int = 0, events_per_user: int = 50, visits_per_user: int = 5) -> pd.DataFrame:
    """n clickstream events in random order over 30 days, integer seconds: each user makes a few visits,
    each visit a burst of clicks a few minutes apart (so sessions and 1-hour counts are non-trivial)."""
    rng = np.random.default_rng(seed)
    n_users = max(1, n // events_per_user)
    visit_start = rng.integers(0, 30 * 24 * 3600, (n_users, visits_per_user))  # (U, V)
    user = rng.integers(0, n_users, n)
    visit = rng.integers(0, visits_per_user, n)
    ts = visit_start[user, visit] + rng.exponential(15 * 60, n).astype(np.int64)
    return pd.DataFrame({"user_id": user.astype(np.int64), "ts": ts.astype(np.int64)})


def features_iterrows(events: pd.DataFrame) -> pd.DataFrame:
    """The version usually written first: iterrows, reading and writing one cell at a time."""
    ordered = events.sort_values(["user_id", "ts"], kind="stable")
    session, count = [], []
    prev_user, prev_ts, session_no, q = None, 0, 0, deque()
    for _, row in ordered.iterrows():
        user, ts = row["user_id"], row["ts"]
        if user != prev_user:
            session_no, q = 0, deque()
        elif ts - prev_ts > SESSION_GAP_S:
            session_no += 1
        prev_user, prev_ts = user, ts
        q.append(ts)
        while q[0] <= ts - WINDOW_S:
            q.popleft()
        session.append(session_no)
        count.append(len(q))
    out = pd.DataFrame({"session_id": session, "events_1h": count}, index=ordered.index, dtype=np.int64)
    return events.join(out)


def features_loop(events: pd.DataFrame) -> pd.DataFrame:
    """The same walk over plain Python lists (tolist), per-user state in dicts: no pandas per row."""
    ordered = events.sort_values(["user_id", "ts"], kind="stable")
    session = np.empty(len(events), dtype=np.int64)
    count = np.empty(len(events), dtype=np.int64)
    last_ts: dict[int, int] = {}
    session_no: dict[int, int] = {}
    window: dict[int, deque] = {}
    for pos, (user, ts) in enumerate(zip(ordered["user_id"].tolist(), ordered["ts"].tolist(), strict=True)):
        if user not in last_ts:
            session_no[user], window[user] = 0, deque()
        elif ts - last_ts[user] > SESSION_GAP_S:
            session_no[user] += 1
        last_ts[user] = ts
        q = window[user]
        q.append(ts)
        while q[0] <= ts - WINDOW_S:
            q.popleft()
        session[pos], count[pos] = session_no[user], len(q)
    out = pd.DataFrame({"session_id": session, "events_1h": count}, index=ordered.index)
    return events.join(out)


def _per_user(g: pd.DataFrame) -> pd.DataFrame:
    session = (g["ts"].diff() > SESSION_GAP_S).cumsum()
    when = pd.to_datetime(g["ts"], unit="s")
    count = pd.Series(1, index=when).rolling(f"{WINDOW_S}s").count().to_numpy()  # window (t - 1h, t]
    return pd.DataFrame(
        {"session_id": session.to_numpy(), "events_1h": count.astype(np.int64)}, index=g.index
    )


def features_apply(events: pd.DataFrame) -> pd.DataFrame:
    """groupby(user).apply: pandas inside each group, but a Python call per user."""
    ordered = events.sort_values(["user_id", "ts"], kind="stable")
    out = ordered.groupby("user_id", group_keys=False)[["ts"]].apply(_per_user)
    return events.join(out)


def features_vectorised(events: pd.DataFrame) -> pd.DataFrame:
    """No Python loop over rows or users: sort once, compare neighbours, cumsum, searchsorted."""
    order = np.lexsort((events["ts"].to_numpy(), events["user_id"].to_numpy()))  # stable: by user, then ts
    user = events["user_id"].to_numpy()[order]  # (n,)
    ts = events["ts"].to_numpy()[order]  # (n,)
    new_user = np.r_[True, user[1:] != user[:-1]]
    new_session = ~new_user & (np.r_[0, np.diff(ts)] > SESSION_GAP_S)
    sessions = np.cumsum(new_session)  # running count over all users...
    first_of_user = np.maximum.accumulate(np.where(new_user, np.arange(len(ts)), 0))
    session = sessions - sessions[first_of_user]  # ...minus the count at the user's first row
    span = int(ts.max() - ts.min()) + WINDOW_S + 1
    key = user * span + (ts - ts.min())  # sorted, and users never overlap in key space
    start = np.searchsorted(key, key - WINDOW_S, side="right")  # first row with ts > t - 1h, same user
    count = np.arange(len(ts)) - start + 1
    out = np.empty((len(ts), 2), dtype=np.int64)
    out[order, 0], out[order, 1] = session, count
    return events.assign(session_id=out[:, 0], events_1h=out[:, 1])


VERSIONS = {
    "iterrows": features_iterrows,
    "loop over lists": features_loop,
    "groupby.apply": features_apply,
    "vectorised": features_vectorised,
}


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals vectorise", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--max-rows", type=int, default=100_000, help="largest size iterrows and apply run on"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    table = Table(title="session_id + events_1h per event, seconds (50 events per user)")
    table.add_column("rows", justify="right")
    for name in VERSIONS:
        table.add_column(name, justify="right")
    table.add_column("vs iterrows", justify="right")
    table.add_column("vs lists", justify="right")
    table.add_column("identical", justify="right")
    for n in args.rows:
        events = make_events(n, args.seed)
        times: dict[str, float] = {}
        outputs: dict[str, pd.DataFrame] = {}
        for name, fn in VERSIONS.items():
            if name in ("iterrows", "groupby.apply") and n > args.max_rows:
                continue
            t0 = time.perf_counter()
            outputs[name] = fn(events)
            times[name] = time.perf_counter() - t0
        same = all(o.equals(outputs["vectorised"]) for o in outputs.values())
        cells = [f"{times[k]:.3f}" if k in times else "skipped" for k in VERSIONS]
        speed = f"{times['iterrows'] / times['vectorised']:.0f}x" if "iterrows" in times else "-"
        speed_lists = f"{times['loop over lists'] / times['vectorised']:.0f}x"
        table.add_row(f"{n:,}", *cells, speed, speed_lists, "yes" if same else "NO")
    table.caption = f"iterrows and apply are skipped above --max-rows={args.max_rows:,}"
    Console(width=110).print(table)
    return 0
