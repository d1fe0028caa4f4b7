"""Reference answer: the batch count is the fraud system's own (systems/fraud_edge/features/velocity.py, for its
windows); the online counter is that system's online count (`raw_from_state` over the store's events), written
plainly with a deque per card."""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np
import pandas as pd

from systems.fraud_edge.features.velocity import WINDOWS, batch_raw_aggregates


def velocity_counts(ts: np.ndarray, card: np.ndarray, window_s: int) -> np.ndarray:
    name = list(WINDOWS)[list(WINDOWS.values()).index(window_s)]  # the fraud system's windows: 10m, 1h, 24h
    n = len(ts)
    stream = pd.DataFrame({"ts": ts, "card_id": card, "terminal_id": np.zeros(n, np.int64),
                           "amount_cents": np.ones(n, np.int64), "lat_e6": np.zeros(n, np.int64),
                           "lon_e6": np.zeros(n, np.int64)})  # fmt: skip
    return batch_raw_aggregates(stream)[f"card_cnt_{name}"]


class VelocityCounter:
    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self.events: dict[int, deque[int]] = defaultdict(deque)  # card -> its timestamps inside the window

    def add(self, card: int, ts: int) -> int:
        q = self.events[card]
        q.append(ts)
        while q[0] <= ts - self.window_s:  # half-open window (ts - w, ts]
            q.popleft()
        return len(q)
