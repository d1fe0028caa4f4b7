"""Feast helpers: point-in-time training reads, and the same online values from SQLite and Redis."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infra.features import FeatureRepo, OnlineStoreUnavailable, redis_connection_string

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def _definitions(parquet: Path):
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32, Int64

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(path=str(parquet), timestamp_field="event_timestamp")
    view = FeatureView(
        name="user_stats",
        entities=[user],
        ttl=timedelta(days=30),
        schema=[Field(name="watches_7d", dtype=Int64), Field(name="completion", dtype=Float32)],
        source=source,
        online=True,
    )
    return [user, view, FeatureService(name="user_service", features=[view])]


def _repo(tmp_path: Path, project: str, store: str, redis_url: str | None = None) -> FeatureRepo:
    rows = []
    for uid in range(20):
        for day in (3, 1):  # an old and a newer value per user
            rows.append({"user_id": uid, "event_timestamp": NOW - timedelta(days=day),
                         "watches_7d": uid * 10 + day, "completion": np.float32(uid / 20 + day / 100)})  # fmt: skip
    tmp_path.mkdir(parents=True, exist_ok=True)
    parquet = tmp_path / "user_stats.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    repo = FeatureRepo(project, tmp_path / f"repo_{store}", online_store=store, redis_url=redis_url)
    repo.apply(_definitions(parquet))
    repo.materialize(NOW - timedelta(days=10), NOW)
    return repo


def test_historical_is_point_in_time(tmp_path: Path, unique_name: str) -> None:
    repo = _repo(tmp_path, unique_name, "sqlite")
    entity_df = pd.DataFrame({"user_id": [4, 4, 4], "event_timestamp": [
        NOW - timedelta(days=4), NOW - timedelta(days=2), NOW]})  # fmt: skip
    out = repo.historical(entity_df, repo.feature_service("user_service"))
    # rows come back in entity_df's order; before any value: null; between the two values: the old one
    # (no peeking at the future); after both: the newest
    assert out["event_timestamp"].tolist() == entity_df["event_timestamp"].tolist()
    assert pd.isna(out["watches_7d"].iloc[0])
    assert out["watches_7d"].iloc[1:].tolist() == [43, 41]


def test_online_read_reports_latency(tmp_path: Path, unique_name: str) -> None:
    repo = _repo(tmp_path, unique_name, "sqlite")
    values, ms = repo.online(repo.feature_service("user_service"), [{"user_id": 3}, {"user_id": 999}])
    assert values["watches_7d"] == [31, None]
    assert 0 < ms < 5_000


@pytest.mark.redis
def test_sqlite_and_redis_serve_the_same_values(tmp_path: Path, unique_name: str, redis_url: str) -> None:
    sqlite = _repo(tmp_path / "a", unique_name, "sqlite")
    redis = _repo(tmp_path / "b", unique_name, "redis", redis_url)
    rows = [{"user_id": u} for u in range(0, 25, 3)]
    a, _ = sqlite.online(sqlite.feature_service("user_service"), rows)
    b, _ = redis.online(redis.feature_service("user_service"), rows)
    assert a == b
    assert a["watches_7d"][1] == 31 and a["watches_7d"][-1] is None  # user 24 does not exist


def test_unreachable_redis_says_what_to_run(tmp_path: Path, unique_name: str) -> None:
    with pytest.raises(OnlineStoreUnavailable, match="redis-server.*MLSD_ONLINE_STORE=sqlite"):
        _repo(tmp_path, unique_name, "redis", "redis://127.0.0.1:1/0")


def test_redis_url_to_feast_connection_string() -> None:
    assert redis_connection_string("redis://127.0.0.1:6379/0") == "127.0.0.1:6379,db=0"
    assert redis_connection_string("redis://:pw@cache:6380/3") == "cache:6380,db=3,password=pw"
    with pytest.raises(ValueError, match="REDIS_URL"):
        redis_connection_string("http://nope")
