"""Feast helpers shared by every system: one code path for the SQLite and the Redis online store.

repo = FeatureRepo("recsys", repo_dir)           # writes feature_store.yaml for MLSD_ONLINE_STORE
repo.apply([user, video, user_stats_view, ...])  # register definitions
repo.materialize(start, end)                     # offline (parquet) -> online store
train_df = repo.historical(entity_df, service)   # point-in-time correct training set
rows, ms = repo.online(service, entity_rows)     # serving read, with its own latency
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

os.environ.setdefault("FEAST_USAGE", "False")  # Feast telemetry off, before feast is imported

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from infra.config import ServiceUnavailable, get_settings  # noqa: E402


class OnlineStoreUnavailable(ServiceUnavailable):
    """The online store could not be reached; the message says how to start it or switch stores."""


def redis_connection_string(url: str) -> str:
    """redis://host:port/db -> Feast's "host:port,db=N[,password=...]" form."""
    parsed = urlparse(url if "://" in url else f"redis://{url}")
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL must look like redis://host:port/db, got {url!r}")
    parts = [f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 6379}"]
    db = (parsed.path or "/0").lstrip("/") or "0"
    parts.append(f"db={int(db)}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def feature_store_config(
    project: str, repo_dir: Path, online_store: str, redis_url: str | None = None
) -> dict[str, Any]:
    """The feature_store.yaml contents: local provider, file offline store, SQLite or Redis online store."""
    if online_store == "sqlite":
        online: dict[str, Any] = {"type": "sqlite", "path": str(repo_dir / "online_store.db")}
    elif online_store == "redis":
        online = {"type": "redis", "connection_string": redis_connection_string(redis_url or "")}
    else:
        raise ValueError(f"MLSD_ONLINE_STORE must be sqlite or redis, got {online_store!r}")
    return {
        "project": project,
        "provider": "local",
        "registry": str(repo_dir / "registry.db"),
        "offline_store": {"type": "file"},
        "online_store": online,
        "entity_key_serialization_version": 3,
    }


def _unavailable(store: str, url: str | None, exc: Exception) -> OnlineStoreUnavailable:
    if store == "redis":
        return OnlineStoreUnavailable(
            f"Redis at {url} refused the connection ({type(exc).__name__}); start it with "
            "`redis-server --daemonize yes` or set MLSD_ONLINE_STORE=sqlite"
        )
    return OnlineStoreUnavailable(
        f"the SQLite online store failed ({exc}); re-run the system's `features` step"
    )


class FeatureRepo:
    """A Feast feature repo in a folder of .mlsd/, configured for the chosen online store."""

    def __init__(
        self,
        project: str,
        repo_dir: Path,
        online_store: str | None = None,
        redis_url: str | None = None,
    ) -> None:
        settings = get_settings()
        self.project = project
        self.repo_dir = Path(repo_dir)
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        self.online_store = online_store or settings.online_store
        self.redis_url = redis_url or settings.redis_url
        config = feature_store_config(project, self.repo_dir, self.online_store, self.redis_url)
        (self.repo_dir / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        from feast import FeatureStore

        self.store = FeatureStore(repo_path=str(self.repo_dir))

    def check_online_store(self) -> None:
        """Fail in milliseconds with a clear message when Redis is down (Feast itself retries for seconds)."""
        if self.online_store != "redis":
            return
        import redis

        try:
            redis.Redis.from_url(self.redis_url, socket_connect_timeout=1).ping()
        except redis.exceptions.RedisError as exc:
            raise _unavailable(self.online_store, self.redis_url, exc) from exc

    def apply(self, objects: Sequence[Any]) -> None:
        """Register entities, feature views and services (idempotent)."""
        self.check_online_store()
        try:
            self.store.apply(list(objects))
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unavailable(self.online_store, self.redis_url, exc) from exc
            raise

    def materialize(self, start: datetime, end: datetime, views: list[str] | None = None) -> None:
        """Load feature values with event time in [start, end] from the offline files into the online store."""
        self.check_online_store()
        try:
            self.store.materialize(start_date=start, end_date=end, feature_views=views)
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unavailable(self.online_store, self.redis_url, exc) from exc
            raise

    def historical(self, entity_df: pd.DataFrame, features: Any) -> pd.DataFrame:
        """Point-in-time join: each entity row gets feature values as of its own event_timestamp.

        A left join in entity_df's order: Feast's file offline store drops entity rows that have no
        feature value yet; they come back here with nulls, as a training set needs them.
        """
        keyed = entity_df.reset_index(drop=True).assign(_mlsd_row=lambda d: np.arange(len(d)))
        joined = self.store.get_historical_features(entity_df=keyed, features=features).to_df()
        feature_cols = [c for c in joined.columns if c not in keyed.columns]
        out = keyed.merge(joined[["_mlsd_row", *feature_cols]], on="_mlsd_row", how="left")
        return out.sort_values("_mlsd_row").drop(columns="_mlsd_row").reset_index(drop=True)

    def online(self, features: Any, entity_rows: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], float]:
        """Read the latest values from the online store; returns (columns, milliseconds)."""
        t0 = time.perf_counter()
        try:
            result = self.store.get_online_features(features=features, entity_rows=entity_rows).to_dict()
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unavailable(self.online_store, self.redis_url, exc) from exc
            raise
        return result, (time.perf_counter() - t0) * 1000.0

    def feature_service(self, name: str) -> Any:
        return self.store.get_feature_service(name)


def _is_connection_error(exc: BaseException) -> bool:
    import redis

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, redis.exceptions.ConnectionError | ConnectionRefusedError | TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
