"""Data tests: the generator's truth, the temporal split, and the MovieLens loaders."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from systems.recsys_two_tower import data

TINY = data.FeedConfig(n_users=300, n_videos=2_000, events_per_user=20, seed=3)


def test_generator_is_deterministic_and_consistent() -> None:
    a, b = data.generate(TINY), data.generate(TINY)
    pd.testing.assert_frame_equal(a.events, b.events)
    ev = a.events
    assert ev["video_id"].between(0, TINY.n_videos - 1).all()
    upload = a.videos["upload_ts"].to_numpy()[ev["video_id"].to_numpy()]
    assert (ev["ts"].to_numpy() > upload).all(), "a watch before its video's upload"
    assert np.allclose(a.user_pref.sum(1), 1, atol=1e-5)
    # popularity is power-law: the top 1% of videos take a large share of watches
    counts = ev["video_id"].value_counts().to_numpy()
    assert counts[: TINY.n_videos // 100].sum() / counts.sum() > 0.1


def test_streamed_feed_is_the_in_memory_one_in_any_chunks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The data step writes the events as generate_stream yields them: small chunks (a session running across a
    chunk's edge, a chunk of the (events, clusters) draw that ends mid-user) give the same feed, and what save
    writes from the stream reads back as the in-memory events."""
    whole = data.generate(TINY)
    assert len(whole.events) > 5_000 and whole.events["session_id"].nunique() < len(whole.events)
    monkeypatch.setattr(data, "EVENT_ROWS", 777)
    monkeypatch.setattr(data, "CHUNK_ROWS", 301)
    feed, chunks = data.generate_stream(TINY)
    assert feed.events.empty
    n_events, n_past = data.save(feed, tmp_path, chunks)
    streamed = pd.read_parquet(tmp_path / "events.parquet")
    pd.testing.assert_frame_equal(streamed, whole.events, check_exact=True)
    assert (n_events, n_past) == (len(whole.events), int((whole.events["ts"] < whole.split_ts).sum()))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "videos.parquet"), whole.videos)


def test_watches_follow_the_true_preferences() -> None:
    feed = data.generate(TINY)
    ev = feed.events
    cluster = feed.videos["cluster"].to_numpy()[ev["video_id"].to_numpy()]
    liked = feed.user_pref[ev["user_id"].to_numpy(), cluster]
    # a watch lands in a cluster the user likes far more often than a random cluster would be liked
    assert liked.mean() > 5 * feed.user_pref.mean()


def test_temporal_split_has_no_future_in_training() -> None:
    feed = data.generate(TINY)
    train, test = data.temporal_split(feed.events, feed.split_ts)
    assert train["ts"].max() < feed.split_ts <= test["ts"].min()
    assert len(train) + len(test) == len(feed.events)


def test_oracle_ranks_test_watches_high() -> None:
    feed = data.generate(TINY)
    test = feed.events[feed.events["ts"] >= feed.split_ts]
    users = test["user_id"].unique()[:50]
    scores = feed.true_scores(users)
    ranks = []
    for row, uid in zip(scores, users, strict=True):
        order = np.argsort(-row)
        pos = np.empty_like(order)
        pos[order] = np.arange(len(order))
        ranks.extend(pos[test.loc[test["user_id"] == uid, "video_id"].to_numpy()])
    assert np.median(ranks) < TINY.n_videos * 0.1  # random would be at 50%


@pytest.mark.parametrize("fmt", ["u.data", "ratings.dat", "ratings.csv"])
def test_movielens_loaders(tmp_path: Path, fmt: str) -> None:
    rows = [(10, 200, 4, 1000), (10, 300, 5, 900), (20, 200, 1, 5000), (10, 200, 3, 4000)]
    path = tmp_path / fmt
    if fmt == "u.data":
        path.write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    elif fmt == "ratings.dat":
        path.write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows))
    else:
        path.write_text(
            "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r}.0,{t}\n" for u, i, r, t in rows)
        )
    events = data.load_movielens(path)
    assert list(events.columns) == ["user_id", "video_id", "ts", "completion", "session_id"]
    assert events["user_id"].tolist() == [0, 0, 0, 1]  # re-indexed, sorted by user then time
    assert events["ts"].tolist() == [900, 1000, 4000, 5000]
    assert events["video_id"].tolist() == [1, 0, 0, 0]
    assert events["completion"].tolist() == pytest.approx([1.0, 0.8, 0.6, 0.2])
    assert events["session_id"].tolist() == [0, 0, 1, 2]  # a >30 min gap or a new user starts a session


def test_movielens_bad_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a MovieLens"):
        data.load_movielens(tmp_path / "ratings.parquet")
    bad = tmp_path / "ratings.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="userId"):
        data.load_movielens(bad)


def test_oracle_is_exact_for_the_length_taste() -> None:
    """The sampler draws watches from the very P(v | u) the oracle ranks by: P sums to 1 per user, and the
    watched length bins per favourite bin match their expectation under it (within sampling noise)."""
    feed = data.generate(TINY)
    scores = feed.true_scores(np.arange(TINY.n_users))
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)
    ev = feed.events
    length = data.duration_bin(feed.videos["duration_s"].to_numpy())
    favourite = feed.duration_pref.argmax(1)
    seen = np.zeros((data.N_DURATION_BINS, data.N_DURATION_BINS))
    np.add.at(seen, (favourite[ev["user_id"]], length[ev["video_id"]]), 1)
    n = np.bincount(ev["user_id"], minlength=TINY.n_users)
    expected = np.stack(
        [np.bincount(favourite, weights=n * scores[:, length == b].sum(1), minlength=data.N_DURATION_BINS)
         for b in range(data.N_DURATION_BINS)], axis=1,
    )  # fmt: skip
    chi2 = ((seen - expected) ** 2 / expected).sum()
    assert chi2 < 60, f"watched length bins are not what the oracle predicts (chi2 {chi2:.1f}, 16 cells)"
    # and the taste is strong: most watches fall in the user's favourite bin or next to it
    near = np.abs(favourite[ev["user_id"]] - length[ev["video_id"]]) <= 1
    assert near.mean() > 0.75
