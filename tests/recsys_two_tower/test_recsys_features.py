"""Feature tests: snapshots never carry the future; the training join is point-in-time correct."""

import numpy as np
import pandas as pd
import pytest

from systems.recsys_two_tower import data
from systems.recsys_two_tower.features import compute
from systems.recsys_two_tower.features.definitions import HISTORY_COLS
from systems.recsys_two_tower.features.repo import open_features
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


def test_a_features_step_that_cannot_fit_says_so_before_it_starts(monkeypatch) -> None:
    """xlarge (400,000 users x 50 watches) on a 24 GB machine: a one-line refusal naming both sizes, not an OOM
    kill ten minutes in; medium fits."""
    from infra.steps import StepError
    from systems.recsys_two_tower import pipeline
    from systems.recsys_two_tower.config import feed_config

    monkeypatch.setattr(pipeline, "total_memory_gb", lambda: 24.0)
    xlarge = feed_config("xlarge", 0)
    events = xlarge.n_users * xlarge.events_per_user  # what the generator aims at (10.4M at large for 10M)
    with pytest.raises(StepError, match=r"xlarge features step needs about 26 GB .* this machine has 24 GB"):
        pipeline.check_features_fit(events, "xlarge")
    pipeline.check_features_fit(839_095, "medium")  # medium's feed: ~1 GB
