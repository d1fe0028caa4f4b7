"""Feast helpers: point-in-time training reads, the same online values from SQLite, Redis and Redis Cluster,
reads that fail within the timeout with a message saying what to run, and Redis memory per entity key."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from infra import redis_cluster
from infra.config import get_settings
from infra.features import (
    FeatureRepo,
    OnlineStoreUnavailable,
    bytes_per_key,
    feature_store_config,
    redis_cluster_connection_string,
    redis_connection_string,
)

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
    """20 users with an old and a newer value each, applied and materialized into `store`."""
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


def test_historical_gives_rows_sharing_a_key_and_second_their_values(
    tmp_path: Path, unique_name: str
) -> None:
    """Two ratings by one user in the same second (an extra column tells them apart): Feast's file store alone
    keeps one entity row per (user, timestamp) and leaves the other without values (47% of MovieLens-100k's
    training rows); the per-view join on distinct keys gives both the same point-in-time values, in order."""
    repo = _repo(tmp_path, unique_name, "sqlite")
    entity_df = pd.DataFrame({"user_id": [4, 7, 4, 4], "item": [10, 11, 12, 13],
                              "event_timestamp": [NOW, NOW, NOW, NOW - timedelta(days=2)]})  # fmt: skip
    out = repo.historical(entity_df, repo.feature_service("user_service"))
    assert out["item"].tolist() == [10, 11, 12, 13]
    assert out["watches_7d"].tolist() == [41, 71, 41, 43]
    raw = repo.store.get_historical_features(entity_df=entity_df, features=["user_stats:watches_7d"]).to_df()
    assert (
        raw["watches_7d"].isna().sum() + (4 - len(raw)) >= 1
    )  # why the helper exists: Feast alone loses one


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


@pytest.mark.redis
def test_sqlite_and_redis_cluster_serve_the_same_values(
    tmp_path: Path, unique_name: str, redis_cluster_url: str
) -> None:
    sqlite = _repo(tmp_path / "a", unique_name, "sqlite")
    cluster = _repo(tmp_path / "b", unique_name, "redis_cluster", redis_cluster_url)
    rows = [{"user_id": u} for u in range(25)]
    a, _ = sqlite.online(sqlite.feature_service("user_service"), rows)
    b, _ = cluster.online(cluster.feature_service("user_service"), rows)
    assert a == b
    assert a["watches_7d"][3] == 31 and a["watches_7d"][-1] is None
    # the 20 users' keys are spread over the masters, so the read really crossed the cluster
    client = cluster.redis_client()
    keys = list(client.scan_iter(match=f"*{unique_name}"))
    assert len(keys) == 20 and len({client.get_node_from_key(k).name for k in keys}) >= 2


def test_cluster_config_names_the_nodes_and_a_deadline(tmp_path: Path) -> None:
    config = feature_store_config(
        "p", tmp_path, "redis_cluster", redis_cluster_url="redis://10.0.0.1:7000,10.0.0.2:7001", timeout_s=0.1
    )
    online = config["online_store"]
    assert online["redis_type"] == "redis_cluster"
    assert online["connection_string"] == (
        "10.0.0.1:7000,10.0.0.2:7001,"
        "socket_connect_timeout=0.1,socket_timeout=0.1,cluster_error_retry_attempts=0"
    )
    single = feature_store_config("p", tmp_path, "redis", redis_url="redis://cache:6380/2", timeout_s=0.1)
    assert single["online_store"]["connection_string"] == (
        "cache:6380,db=2,socket_connect_timeout=0.1,socket_timeout=0.1,retry=null"
    )
    assert redis_cluster_connection_string("rediss://:pw@a:7000") == "a:7000,password=pw,ssl=true"
    with pytest.raises(ValueError, match="MLSD_REDIS_CLUSTER_URL"):
        redis_cluster_connection_string("http://a:7000")
    with pytest.raises(ValueError, match="sqlite, redis or redis_cluster"):
        feature_store_config("p", tmp_path, "memcached")


def test_feast_builds_its_clients_with_the_timeouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection-string parameters reach redis-py's client: Feast builds it, we read its connection kwargs."""
    monkeypatch.setenv("MLSD_REDIS_TIMEOUT_S", "0.125")
    get_settings.cache_clear()
    repo = FeatureRepo("p", tmp_path / "single", online_store="redis", redis_url="redis://127.0.0.1:1/0")
    provider = repo.store._get_provider()
    client = provider.online_store._get_client(repo.store.config.online_store)  # builds it, connects lazily
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.125
    assert kwargs["retry"] is None  # no hidden retries with backoff behind the timeout


def test_unreachable_redis_cluster_says_what_to_run(tmp_path: Path, unique_name: str) -> None:
    port = redis_cluster.free_port_base()
    t0 = time.perf_counter()
    with pytest.raises(OnlineStoreUnavailable, match=r"mlsd redis-cluster start.*MLSD_ONLINE_STORE=sqlite"):
        _repo(tmp_path, unique_name, "redis_cluster", f"redis://127.0.0.1:{port}")
    assert time.perf_counter() - t0 < 5


@pytest.fixture
def own_cluster(tmp_path: Path, redis_server_binary: str) -> Iterator[redis_cluster.ClusterSpec]:
    """A cluster this test may pause and stop (the session's one is shared)."""
    spec = redis_cluster.ClusterSpec(
        port_base=redis_cluster.free_port_base(), appendonly=False, root=tmp_path / "rc"
    )
    redis_cluster.start(spec)
    yield spec
    for node in redis_cluster.status(spec).nodes:
        if node.pid:
            os.kill(node.pid, signal.SIGCONT)
    redis_cluster.stop(spec, remove_data=True)


def _failing_read_seconds(repo: FeatureRepo, match: str) -> float:
    rows = [{"user_id": u} for u in range(20)]
    t0 = time.perf_counter()
    with pytest.raises(OnlineStoreUnavailable, match=match):
        repo.online(repo.feature_service("user_service"), rows)
    return time.perf_counter() - t0


@pytest.mark.redis
def test_cluster_that_stops_answering_fails_within_the_timeout(
    tmp_path: Path, unique_name: str, own_cluster: redis_cluster.ClusterSpec
) -> None:
    timeout_s = get_settings().redis_timeout_s
    repo = _repo(tmp_path, unique_name, "redis_cluster", own_cluster.url)
    service, rows = repo.feature_service("user_service"), [{"user_id": 3}]
    assert repo.online(service, rows)[0]["watches_7d"] == [31]
    pids = [n.pid for n in redis_cluster.status(own_cluster).nodes]

    # paused (a hung node: the TCP connect succeeds, no reply ever comes): the socket timeout is the only way
    # out; the pipeline waits on each master, then redis-py refreshes the slot map from each node: about
    # (2 x masters + 1) timeouts in all, where without a timeout it would wait forever
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    elapsed = _failing_read_seconds(repo, "Redis Cluster at .* did not answer")
    assert elapsed < (2 * len(pids) + 3) * timeout_s, elapsed
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    assert repo.online(service, rows)[0]["watches_7d"] == [31]  # recovers with the same client

    # stopped: refused at once, and the message says what to run
    redis_cluster.stop(own_cluster)
    elapsed = _failing_read_seconds(repo, r"mlsd redis-cluster start")
    assert elapsed < 2 * timeout_s, elapsed  # refused at once: no wait on any timeout


@pytest.mark.redis
def test_paused_redis_fails_within_the_timeout(
    tmp_path: Path, unique_name: str, redis_server_binary: str
) -> None:
    binary = redis_server_binary
    port = redis_cluster.free_port_base(masters=1)
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(50):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.1)
        repo = _repo(tmp_path, unique_name, "redis", url)
        os.kill(proc.pid, signal.SIGSTOP)
        elapsed = _failing_read_seconds(repo, "Redis at .* did not answer .*redis-server")
        assert elapsed < 3 * get_settings().redis_timeout_s, elapsed
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.redis
@pytest.mark.parametrize("store", ["redis", "redis_cluster"])
def test_bytes_per_key_measures_entity_keys(
    tmp_path: Path, unique_name: str, store: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url" if store == "redis" else "redis_cluster_url")
    repo = _repo(tmp_path, unique_name, store, url)
    client = repo.redis_client()
    per_user = repo.online_bytes_per_entity(sample=50)
    # the sample is all 20 users: the mean of MEMORY USAGE over exactly those keys
    keys = list(client.scan_iter(match=f"*{unique_name}"))
    assert len(keys) == 20
    assert per_user == pytest.approx(np.mean([client.memory_usage(k, samples=0) for k in keys]))
    assert 50 < per_user < 1_000  # two features and a timestamp per user: tens to hundreds of bytes

    # more fields per key cost more bytes; a sample smaller than the keys is a sample
    for i in range(10):
        client.hset(f"{unique_name}:wide:{{{i}}}", mapping={f"f{j}": "x" * 20 for j in range(30)})
        client.hset(f"{unique_name}:narrow:{{{i}}}", mapping={"f0": "x" * 20})
    wide = bytes_per_key(client, f"{unique_name}:wide:*", sample=5)
    assert wide > bytes_per_key(client, f"{unique_name}:narrow:*", sample=5) + 29 * 20
    client.delete(*[f"{unique_name}:{kind}:{{{i}}}" for kind in ("wide", "narrow") for i in range(10)])
    with pytest.raises(ValueError, match="no key matches"):
        bytes_per_key(client, f"{unique_name}:nothing:*")
