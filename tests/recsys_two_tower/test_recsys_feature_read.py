"""The server's prepared feature read (FeatureRepo.online_reader) returns what Feast's get_online_features returns,
value for value, on the same keys: every user of the small pipeline and ids no one has, on SQLite and on Redis.
The Redis case runs benchmarks/recsys/feature_read.py's own measurement (fails instead of skipping in CI); the
served path's CPU bench (benchmarks/recsys/served_cpu.py) runs once on the same pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.recsys import served_cpu
from benchmarks.recsys.feature_read import measure
from infra.config import get_settings
from systems.recsys_two_tower import data
from systems.recsys_two_tower.features.repo import open_features

UNKNOWN = [10**9, 2**53 - 1]  # ids no one has: every feature None, as Feast answers


def test_prepared_read_equals_feast_read_on_sqlite(recsys_env) -> None:
    features = open_features(recsys_env.workdir, "small")
    assert features.repo.online_store == "sqlite"
    read = features.repo.online_reader(features.user_serving, "user_id")
    users = [*range(data.load(recsys_env.workdir).config.n_users), *UNKNOWN]
    want, _ = features.repo.online(features.user_serving, [{"user_id": u} for u in users])
    assert read(users) == want  # one read of every key at once
    for u in [0, 7, *UNKNOWN]:  # and one key at a time, as the server reads
        assert read([u]) == features.repo.online(features.user_serving, [{"user_id": u}])[0]
    assert want["watches_30d"][-1] is None and isinstance(want["history_0"][0], int)


@pytest.mark.redis
def test_prepared_read_equals_feast_read_on_redis(
    recsys_env, redis_url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSD_ONLINE_STORE", "sqlite")  # measure() sets it; monkeypatch puts it back
    try:
        rows = measure("redis", recsys_env.workdir, tmp_path, "small", reads=300)
    finally:
        get_settings.cache_clear()
    assert [r["read"] for r in rows] == ["get_online_features", "prepared read"]
    assert all(r["same_columns"] and 0 < r["p50_ms"] <= r["p99_ms"] for r in rows)


@pytest.mark.slow
def test_served_cpu_bench_measures_both_routes_of_one_server(recsys_env) -> None:
    """benchmarks/recsys/served_cpu.py on the small pipeline: a server of this tree, both routes counted."""
    (row,) = served_cpu.measure("small", requests=30, rounds=1)
    assert row["recommend_cpu_ms"] > 0 and row["floor_cpu_ms"] > 0 and row["ratio"] > 1
    assert set(row["stages_p50_ms"]) >= {"features", "ann", "ranker", "total"}
