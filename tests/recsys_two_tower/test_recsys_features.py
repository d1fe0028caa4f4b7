"""Feature tests: snapshots never carry the future; the training join is point-in-time correct."""

from pathlib import Path

import numpy as np
import pandas as pd

from systems.recsys_two_tower import data
from systems.recsys_two_tower.config import feed_config
from systems.recsys_two_tower.features import compute
from systems.recsys_two_tower.features.definitions import HISTORY_COLS
from systems.recsys_two_tower.features.repo import (
    OFFLINE_DIR,
    build_features,
    build_features_partitioned,
    open_features,
)
from systems.recsys_two_tower.train import training_frame

TINY = data.FeedConfig(n_users=200, n_videos=1_000, events_per_user=25, seed=5)


def test_user_snapshot_counts_match_a_direct_count() -> None:
    feed = data.generate(TINY)
    snaps = compute.user_snapshots(feed.events, feed.videos, feed.users)
    active = snaps[snaps["watches_30d"] > 0].sample(50, random_state=0)
    ev = feed.events
    for row in active.itertuples():
        t = row.event_timestamp.timestamp()
        mine = ev[(ev["user_id"] == row.user_id) & (ev["ts"] <= t)]
        assert row.watches_30d == (mine["ts"] > t - 30 * data.DAY).sum() or row.watches_30d <= len(mine)
        assert row.history_0 == mine.sort_values("ts")["video_id"].iloc[-1]  # newest watch first


def test_training_join_sees_only_the_past(recsys_env) -> None:
    feed = data.load(recsys_env.workdir)
    features = open_features(recsys_env.workdir, "small")
    frame = training_frame(feed, features, 3_000)
    assert len(frame) > 2_900  # the join drops (almost) nothing
    ev = feed.events.set_index(["user_id", "video_id"])
    day_start = (frame["event_timestamp"].astype("int64") // 10**9) // data.DAY * data.DAY
    hist = frame[HISTORY_COLS[0]].fillna(-1).to_numpy(np.int64)
    checked = 0
    for uid, vid, start in zip(frame["user_id"], hist, day_start, strict=True):
        if vid < 0:
            continue
        # the newest watch in the joined snapshot happened before the training watch's day began
        assert ev.loc[(uid, vid), "ts"].min() < start
        checked += 1
    assert checked > 1_000


def test_popularity_resets_after_idle_week() -> None:
    events = pd.DataFrame({"user_id": [0, 0], "video_id": [1, 1], "ts": [data.START_TS + 10, data.START_TS + 20 * data.DAY],
                           "completion": np.float32([0.5, 1.0])})  # fmt: skip
    videos = pd.DataFrame({"video_id": [0, 1], "upload_ts": [data.START_TS - 100, data.START_TS - 100]})
    pop = compute.video_popularity(events, videos).sort_values(["video_id", "event_timestamp"])
    v1 = pop[pop["video_id"] == 1]["pop_7d"].tolist()
    assert v1 == [0, 1, 0, 1, 0]  # upload, first watch, reset after 7 idle days, second watch, reset


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in one order whatever the partitions: by every column (keys and time first)."""
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def test_partitioned_features_equal_the_in_memory_ones(tmp_path: Path) -> None:
    """The step's out-of-core path (7 user- and video-hash partitions of the small feed) writes the same offline
    rows, trending list and online values as the whole feed in memory."""
    feed = data.generate(feed_config("small", 0))
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    build_features(feed, whole, "small", online_store="sqlite")
    data.save(feed, parts)
    counts = build_features_partitioned(
        parts, "small", online_store="sqlite", rows_per_partition=len(feed.events) // 7 + 1
    )
    assert counts["partitions"] == 7
    for name in ("user_stats", "video_content", "video_popularity"):
        want = pd.read_parquet(whole / OFFLINE_DIR / f"{name}.parquet")
        got = pd.read_parquet(parts / OFFLINE_DIR / f"{name}.parquet")
        pd.testing.assert_frame_equal(_sorted(got), _sorted(want), check_exact=True)
    np.testing.assert_array_equal(np.load(parts / "trending.npy"), np.load(whole / "trending.npy"))
    assert not list((parts / OFFLINE_DIR).glob("_*")), (
        "the partitions and the rows to materialise are removed"
    )

    users = [{"user_id": u} for u in [*range(0, feed.config.n_users, 3), feed.config.n_users + 5]]
    a, b = open_features(whole, "small", "sqlite"), open_features(parts, "small", "sqlite")
    want, _ = a.repo.online(a.user_serving, users)
    got, _ = b.repo.online(b.user_serving, users)
    assert got == want
    assert counts["users_materialized"] == feed.config.n_users  # every user watched something
    assert want["watches_30d"][-1] is None and max(w or 0 for w in want["watches_30d"]) > 0


def test_trending_orders_ties_by_video_id() -> None:
    counts = np.array([0, 3, 5, 3, 0, 5, 1])
    np.testing.assert_array_equal(compute.trending_from_counts(counts, 4), [2, 5, 1, 3])
    assert compute.trending_from_counts(np.zeros(4, np.int64), 3).size == 0  # unwatched videos never trend
