"""Exercise: make a per-user pandas loop fast, with identical output.

Per event (user_id, ts in integer seconds): session_id = the user's session number, from 0, where a new session
starts after a gap of more than 30 minutes; events_1h = how many of the user's events fall in (ts - 1 h, ts],
this one included. `features_loop` below is the slow, correct version. Write `features_vectorised` with the same
output (same index, same row order, int64 columns) and no Python loop over rows or users: no for / while,
comprehension, iterrows, itertuples or apply.

Check your answer: `mlsd exercise check vectorise`.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

SESSION_GAP_S = 30 * 60
WINDOW_S = 60 * 60


def features_loop(events: pd.DataFrame) -> pd.DataFrame:
    """The slow version, per event in (user, ts) order (a copy of fundamentals/vectorise.py's, for reading)."""
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


def features_vectorised(events: pd.DataFrame) -> pd.DataFrame:
    """events (user_id, ts) -> events with session_id and events_1h added, in the input's order."""
    # hint: sort once by (user, ts); compare each row with the previous one; cumsum; np.searchsorted
    raise NotImplementedError
