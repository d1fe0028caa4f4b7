"""The `features` step: write the offline parquet snapshots, register them in Feast, fill the online store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from infra.features import FeatureRepo
from systems.recsys_two_tower.data import DAY, START_TS, Feed
from systems.recsys_two_tower.features import compute, definitions


def feature_repo(workdir: Path, scale: str, online_store: str | None = None) -> FeatureRepo:
    """The Feast repo of this scale (SQLite or Redis online store per MLSD_ONLINE_STORE)."""
    repo = FeatureRepo(f"recsys_{scale}", workdir / "feature_repo", online_store=online_store)
    repo.objects = definitions.build(workdir / "offline")  # type: ignore[attr-defined]
    return repo


def build_features(feed: Feed, workdir: Path, scale: str, online_store: str | None = None) -> dict[str, int]:
    """Compute snapshots from all events, apply definitions, materialize user_stats online."""
    offline = workdir / "offline"
    offline.mkdir(parents=True, exist_ok=True)
    users = compute.user_snapshots(feed.events, feed.videos, feed.users)
    videos = compute.video_content(feed.videos)
    popularity = compute.video_popularity(feed.events, feed.videos)
    users.to_parquet(offline / "user_stats.parquet")
    videos.to_parquet(offline / "video_content.parquet")
    popularity.to_parquet(offline / "video_popularity.parquet")
    trending = trending_videos(feed.events, START_TS + feed.config.days * DAY, 500)
    np.save(workdir / "trending.npy", trending)

    repo = feature_repo(workdir, scale, online_store)
    repo.apply(list(repo.objects.values()))  # type: ignore[attr-defined]
    end = datetime.fromtimestamp(START_TS + feed.config.days * DAY, UTC)
    start = datetime.fromtimestamp(START_TS - DAY, UTC)
    repo.materialize(start, end, views=["user_stats"])
    return {"user_snapshots": len(users), "videos": len(videos), "popularity_rows": len(popularity)}


def trending_videos(events: pd.DataFrame, now_ts: int, k: int) -> np.ndarray:
    """Most-watched videos of the last 7 days before now_ts: the cold-start answer."""
    recent = events[(events["ts"] < now_ts) & (events["ts"] >= now_ts - 7 * DAY)]
    return recent["video_id"].value_counts().index.to_numpy(np.int64)[:k]
