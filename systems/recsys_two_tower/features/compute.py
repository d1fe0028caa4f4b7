"""Batch feature jobs: events -> daily snapshots of user and video features (the offline store).

A snapshot stamped at the end of day d holds what was known at that moment, so a point-in-time join
gives a watch on day d the snapshot of day d-1 or earlier: no event ever sees its own future.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from systems.recsys_two_tower.data import DAY, N_SUB, N_TOPICS
from systems.recsys_two_tower.features.definitions import CONTENT_COLS, HISTORY_COLS, HISTORY_LEN, TOPIC_COLS


def _end_of_day(ts: np.ndarray) -> np.ndarray:
    return (ts // DAY + 1) * DAY - 1


def _to_timestamp(ts: np.ndarray) -> pd.Series:
    return pd.to_datetime(ts, unit="s", utc=True)


def user_snapshots(events: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """A zero row at signup, then one row per (user, day with activity): trailing 7/30-day counts,
    completion, topic mix, last watches. (Feast's file store drops a training row that finds no value,
    so every user has one from signup on.)"""
    ev = events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    topic = (videos["cluster"].to_numpy() // N_SUB)[ev["video_id"].to_numpy()]
    frame = pd.DataFrame(
        {"user_id": ev["user_id"].to_numpy(), "t": pd.to_datetime(ev["ts"].to_numpy(), unit="s"),
         "completion": ev["completion"].to_numpy(), "one": 1.0}
    )  # fmt: skip
    onehot = np.zeros((len(ev), N_TOPICS), dtype=np.float32)
    onehot[np.arange(len(ev)), topic] = 1.0
    for j in range(N_TOPICS):
        frame[f"t{j}"] = onehot[:, j]
    grouped = frame.set_index("t").groupby("user_id", sort=False)
    cols = ["one", "completion", *[f"t{j}" for j in range(N_TOPICS)]]
    r30 = grouped[cols].rolling("30D").sum().reset_index(drop=True)
    r7 = grouped[["one"]].rolling("7D").sum().reset_index(drop=True)

    # the last event of each (user, day) carries that day's snapshot
    day = ev["ts"].to_numpy() // DAY
    user = ev["user_id"].to_numpy()
    last_of_day = np.ones(len(ev), dtype=bool)
    last_of_day[:-1] = (user[1:] != user[:-1]) | (day[1:] != day[:-1])
    idx = np.flatnonzero(last_of_day)

    # recent history: the HISTORY_LEN watches up to and including idx, newest first, -1 padded
    first_index = pd.Series(np.arange(len(ev))).groupby(user).transform("min").to_numpy()
    back = idx[:, None] - np.arange(HISTORY_LEN)[None, :]
    valid = back >= first_index[idx][:, None]
    vids = ev["video_id"].to_numpy()
    history = np.where(valid, vids[np.clip(back, 0, None)], -1)

    n30 = r30["one"].to_numpy()[idx]
    topic_counts = r30[[f"t{j}" for j in range(N_TOPICS)]].to_numpy()[idx]
    signup = pd.DataFrame(
        {"user_id": users["user_id"].to_numpy(np.int64), "event_timestamp": _to_timestamp(users["signup_ts"].to_numpy()),
         "watches_7d": 0, "watches_30d": 0, "mean_completion_30d": np.float32(0),
         **{c: np.float32(0) for c in TOPIC_COLS}, **{c: np.int64(-1) for c in HISTORY_COLS}}
    )  # fmt: skip
    active = pd.DataFrame(
        {
            "user_id": user[idx],
            "event_timestamp": _to_timestamp(_end_of_day(ev["ts"].to_numpy()[idx])),
            "watches_7d": r7["one"].to_numpy()[idx].astype(np.int64),
            "watches_30d": n30.astype(np.int64),
            "mean_completion_30d": (r30["completion"].to_numpy()[idx] / np.maximum(n30, 1)).astype(
                np.float32
            ),
        }
    )
    shares = (topic_counts / np.maximum(n30, 1)[:, None]).astype(np.float32)
    for j, c in enumerate(TOPIC_COLS):
        active[c] = shares[:, j]
    for j, c in enumerate(HISTORY_COLS):
        active[c] = history[:, j].astype(np.int64)
    return pd.concat([signup, active], ignore_index=True)


def video_content(videos: pd.DataFrame) -> pd.DataFrame:
    """Static content features, stamped at upload time."""
    return pd.DataFrame(
        {
            "video_id": videos["video_id"].to_numpy(),
            "event_timestamp": _to_timestamp(videos["upload_ts"].to_numpy()),
            "topic": (videos["cluster"].to_numpy() // N_SUB).astype(np.int64),
            "creator_id": videos["creator_id"].to_numpy(np.int64),
            "duration_s": videos["duration_s"].to_numpy(np.int64),
            "upload_ts": videos["upload_ts"].to_numpy(np.int64),
            **{c: videos[c].to_numpy(np.float32) for c in CONTENT_COLS},
        }
    )


def video_popularity(events: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    """Watches over the last 1 and 7 days and their completion, refreshed at the end of each day with
    watches; a zero row at upload and a reset row after 7 idle days keep the last value from going stale."""
    day = events["ts"].to_numpy() // DAY
    daily = (
        pd.DataFrame(
            {
                "video_id": events["video_id"].to_numpy(),
                "day": day,
                "n": 1,
                "completion": events["completion"].to_numpy(),
            }
        )  # fmt: skip
        .groupby(["video_id", "day"], sort=True)
        .agg(n=("n", "sum"), completion=("completion", "sum"))
        .reset_index()
    )
    daily["t"] = pd.to_datetime(daily["day"] * DAY, unit="s")
    g = daily.set_index("t").groupby("video_id", sort=False)
    r7 = g[["n", "completion"]].rolling("7D").sum().reset_index()
    active = pd.DataFrame(
        {
            "video_id": r7["video_id"].to_numpy(np.int64),
            "event_timestamp": _to_timestamp(_end_of_day(r7["t"].astype("int64").to_numpy() // 10**9)),
            "pop_1d": daily["n"].to_numpy(np.int64),
            "pop_7d": r7["n"].to_numpy(np.int64),
            "completion_7d": (r7["completion"] / r7["n"].clip(lower=1)).to_numpy(np.float32),
        }
    )
    vid, d = daily["video_id"].to_numpy(), daily["day"].to_numpy()
    next_day = np.where(np.r_[vid[1:] == vid[:-1], False], np.r_[d[1:], 0], np.iinfo(np.int64).max)
    idle = next_day - d > 7
    reset_ts = (d[idle] + 8) * DAY - 1  # end of the 7th idle day
    zeros = lambda n, t: pd.DataFrame({"pop_1d": np.zeros(n, np.int64), "pop_7d": np.zeros(n, np.int64),  # noqa: E731
                                       "completion_7d": np.zeros(n, np.float32), "event_timestamp": t})  # fmt: skip
    reset = zeros(int(idle.sum()), _to_timestamp(reset_ts)).assign(video_id=vid[idle].astype(np.int64))
    upload = zeros(len(videos), _to_timestamp(videos["upload_ts"].to_numpy())).assign(
        video_id=videos["video_id"].to_numpy(np.int64)
    )
    return pd.concat([upload, active, reset[active.columns]], ignore_index=True)[active.columns]


TRENDING_DAYS = 7


def trending_from_counts(counts: np.ndarray, k: int) -> np.ndarray:
    """The k most-watched videos (count descending, then video id), from per-video watch counts of the trending
    window: one rule for the in-memory count and the streamed one, ties included."""
    watched = np.flatnonzero(counts)
    order = np.lexsort((watched, -counts[watched]))
    return watched[order][:k].astype(np.int64)
