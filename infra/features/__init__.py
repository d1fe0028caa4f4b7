"""Feast helpers: feature_store.yaml for SQLite or Redis, apply, materialize, historical and online reads."""

from infra.features.store import (
    FeatureRepo,
    OnlineStoreUnavailable,
    feature_store_config,
    redis_connection_string,
)

__all__ = ["FeatureRepo", "OnlineStoreUnavailable", "feature_store_config", "redis_connection_string"]
