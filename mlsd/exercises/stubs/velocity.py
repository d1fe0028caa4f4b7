"""Exercise: a sliding-window velocity count (how many transactions has this card made in the last w seconds?),
in batch over a history and online, one event at a time.

For each event of card c at time ts, count the events of card c with ts - w < ts_e <= ts: the window is
half-open and the event itself is included. Timestamps are integer seconds and distinct within a card. The batch
function sees the whole stream at once (in any order) and must not loop in Python over events; the online
counter sees events one at a time in time order and must give the batch's count for every event (the
train/serving skew test of systems/fraud_edge replays one stream through both paths).

Check your answer: `mlsd exercise check velocity`.
"""

from __future__ import annotations

from collections import deque  # noqa: F401  (for your answer)

import numpy as np


def velocity_counts(ts: np.ndarray, card: np.ndarray, window_s: int) -> np.ndarray:
    """ts (n,) int64 seconds, card (n,) int64 ids -> (n,) int64 counts, in the input's order."""
    # hint: sort by (card, ts) once, then one np.searchsorted on a combined key
    raise NotImplementedError


class VelocityCounter:
    """The same count online: add(card, ts) records the event and returns its count."""

    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        raise NotImplementedError

    def add(self, card: int, ts: int) -> int:
        raise NotImplementedError
