"""Feast definitions: entities user and video, their feature views, and the services that read them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float32, Int64

from systems.recsys_two_tower.data import CONTENT_DIM, N_TOPICS

HISTORY_LEN = 20
# Vectors are stored as scalar columns, not Feast Array fields: the file offline store (dask) pickles
# object columns to hash them, which made a 50k-row point-in-time join take a minute instead of seconds.
TOPIC_COLS = [f"topic_share_{j}" for j in range(N_TOPICS)]  # share of the last 30 days' watches per topic
HISTORY_COLS = [f"history_{j}" for j in range(HISTORY_LEN)]  # last watches, newest first, -1 = none
CONTENT_COLS = [f"content_{j}" for j in range(CONTENT_DIM)]  # the content encoder's vector
USER_COLS = ["watches_7d", "watches_30d", "mean_completion_30d", *TOPIC_COLS, *HISTORY_COLS]  # user_stats


@dataclass(frozen=True)
class Definitions:
    """Every Feast object of the recsys repo (what `feast apply` registers)."""

    user: Entity
    video: Entity
    user_stats: FeatureView
    video_content: FeatureView
    video_popularity: FeatureView
    user_serving: FeatureService  # what /recommend reads
    training: FeatureService  # the point-in-time training join
    catalog: FeatureService  # what the catalog is embedded from

    def all(self) -> list[Entity | FeatureView | FeatureService]:
        return [getattr(self, f.name) for f in fields(self)]  # not astuple: it deep-copies


def build(offline_dir: Path) -> Definitions:
    """Every Feast object, pointing at the parquet files the `features` step writes in offline_dir."""
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="a viewer")
    video = Entity(name="video", join_keys=["video_id"], value_type=ValueType.INT64, description="a video")

    user_stats = FeatureView(
        name="user_stats",
        entities=[user],
        ttl=timedelta(0),  # no expiry: every user has a signup row, so no training row is ever dropped
        schema=[
            Field(name="watches_7d", dtype=Int64),
            Field(name="watches_30d", dtype=Int64),
            Field(name="mean_completion_30d", dtype=Float32),
            *[Field(name=c, dtype=Float32) for c in TOPIC_COLS],
            *[Field(name=c, dtype=Int64) for c in HISTORY_COLS],
        ],
        source=FileSource(path=str(offline_dir / "user_stats.parquet"), timestamp_field="event_timestamp"),
        online=True,
    )
    video_content = FeatureView(
        name="video_content",
        entities=[video],
        ttl=timedelta(0),
        schema=[
            Field(name="topic", dtype=Int64),
            Field(name="creator_id", dtype=Int64),
            Field(name="duration_s", dtype=Int64),
            Field(name="upload_ts", dtype=Int64),
            *[Field(name=c, dtype=Float32) for c in CONTENT_COLS],
        ],
        source=FileSource(path=str(offline_dir / "video_content.parquet"), timestamp_field="event_timestamp"),
        online=False,  # the catalog is embedded in batch; serving never reads it
    )
    video_popularity = FeatureView(
        name="video_popularity",
        entities=[video],
        ttl=timedelta(0),  # no expiry: an upload row and a reset row after 7 idle days keep it exact
        schema=[
            Field(name="pop_1d", dtype=Int64),
            Field(name="pop_7d", dtype=Int64),
            Field(name="completion_7d", dtype=Float32),
        ],
        source=FileSource(
            path=str(offline_dir / "video_popularity.parquet"), timestamp_field="event_timestamp"
        ),
        online=False,
    )
    user_serving = FeatureService(name="user_serving", features=[user_stats])
    training = FeatureService(name="training", features=[user_stats, video_content, video_popularity])
    catalog = FeatureService(name="catalog", features=[video_content, video_popularity])
    return Definitions(
        user, video, user_stats, video_content, video_popularity, user_serving, training, catalog
    )
