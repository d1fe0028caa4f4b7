"""Feast helpers: feature_store.yaml for SQLite, Redis or Redis Cluster, apply, materialize, historical and
online reads, and Redis memory per entity key."""

from infra.features.online_memory import bytes_per_key
from infra.features.store import (
    FeatureRepo,
    OnlineStoreUnavailable,
    check_online_store,
    feature_store_config,
    redis_cluster_connection_string,
    redis_connection_string,
)

__all__ = [
    "FeatureRepo",
    "OnlineStoreUnavailable",
    "bytes_per_key",
    "check_online_store",
    "feature_store_config",
    "redis_cluster_connection_string",
    "redis_connection_string",
]
