"""Feast online-read latency and bytes per entity, the same feature view on each online store.

python -m infra.features.read_latency [--stores sqlite,redis,redis_cluster] [--users 10000] [--reads 1000]
                                      [--batch 1]

Each store gets `--users` users with two features (an int and a float, like a user-stats view), applied and
materialized through FeatureRepo, then `--reads` online reads of `--batch` random users each (after 50 warm-up
reads); the table gives p50 and p99 in ms, and for Redis the bytes per user (MEMORY USAGE over 1,000 keys).
Redis at REDIS_URL and the cluster at MLSD_REDIS_CLUSTER_URL must be running
(`mlsd redis-cluster start`); the keys written are deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from infra.config import get_settings
from infra.console import print_rows
from infra.features.store import FeatureRepo

WARMUP_READS = 50


def _user_stats(repo_dir: Path, users: int, seed: int) -> tuple[list, Path]:
    """A user entity and a two-feature view over `users` users, backed by a parquet file in repo_dir."""
    # here, not at the top: importing feast takes seconds (FeatureRepo imports it for the same reason)
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32, Int64

    rng = np.random.default_rng(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    frame = pd.DataFrame(
        {
            "user_id": np.arange(users, dtype=np.int64),
            "event_timestamp": now - timedelta(hours=1),
            "watches_7d": rng.integers(0, 200, users),
            "completion": rng.random(users, dtype=np.float32),
        }
    )
    parquet = repo_dir / "user_stats.parquet"
    frame.to_parquet(parquet)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="user_stats",
        entities=[user],
        ttl=timedelta(days=30),
        schema=[Field(name="watches_7d", dtype=Int64), Field(name="completion", dtype=Float32)],
        source=FileSource(path=str(parquet), timestamp_field="event_timestamp"),
        online=True,
    )
    return [user, view, FeatureService(name="user_service", features=[view])], parquet


def measure(store: str, users: int, reads: int, batch: int, seed: int) -> list[object]:
    """[store, p50 ms, p99 ms, bytes per user or '-'] for one online store."""
    repo_dir = Path(
        tempfile.mkdtemp(prefix=f"read_latency_{store}_", dir=get_settings().system_dir("features"))
    )
    project = f"read_latency_{uuid.uuid4().hex[:8]}"
    repo = FeatureRepo(project, repo_dir, online_store=store)
    try:
        objects, _ = _user_stats(repo_dir, users, seed)
        repo.apply(objects)
        t0 = time.perf_counter()
        repo.materialize(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
        print(f"{store}: materialized {users:,} users in {time.perf_counter() - t0:.1f} s")
        service = repo.feature_service("user_service")
        rng = np.random.default_rng(seed)
        ms = []
        for i in range(WARMUP_READS + reads):
            rows = [{"user_id": int(u)} for u in rng.integers(0, users, batch)]
            _, elapsed = repo.online(service, rows)
            if i >= WARMUP_READS:
                ms.append(elapsed)
        per_user = round(repo.online_bytes_per_entity(sample=1000)) if store != "sqlite" else "-"
        return [store, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), per_user]
    finally:
        repo.store.teardown()  # deletes this project's keys from Redis: the store may be shared
        shutil.rmtree(repo_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m infra.features.read_latency", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--stores", default="sqlite,redis,redis_cluster", help="comma-separated online stores"
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=1, help="users per online read")
    args = parser.parse_args(argv)
    seed = get_settings().seed
    rows = [measure(s.strip(), args.users, args.reads, args.batch, seed) for s in args.stores.split(",")]
    print_rows(
        f"Feast online read, {args.users:,} users, {args.reads:,} reads of {args.batch} user(s)",
        ["store", "p50 ms", "p99 ms", "bytes per user"],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
