"""benchmarks/recsys/online_store.py's measurement on single Redis, small scale: it copies the feed the data step
wrote (all of it: the step's own file list), fills the store with the features step and reads bytes per user and
read latency back. Needs Redis (fails instead of skipping in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.recsys.online_store import measure
from infra.config import get_settings
from systems.recsys_two_tower.features.repo import open_features


@pytest.mark.redis
def test_online_store_bench_fills_every_user_and_sizes_them(
    recsys_env, redis_url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # measure() sets MLSD_ONLINE_STORE for its store; monkeypatch puts back what was there before
    monkeypatch.setenv("MLSD_ONLINE_STORE", "sqlite")
    try:
        row = measure("redis", redis_url, recsys_env.workdir, tmp_path, "small", sample=200)
        # one hash per user, every user written; 23 scalars + 20 ids in Feast's encoding: hundreds of bytes
        assert row["store"] == "redis" and row["keys"] == row["users"] == 1_500
        assert 200 < row["bytes_per_user"] < 5_000
        assert 0 < row["read_p50_ms"] <= row["read_p99_ms"]
    finally:
        # this project's keys only: the machine's Redis is shared
        open_features(tmp_path / "redis", "small").repo.store.teardown()
        get_settings.cache_clear()
