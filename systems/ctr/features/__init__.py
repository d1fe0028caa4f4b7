"""The ctr feature store: Feast definitions, the point-in-time training join, and the one transform
(`model_inputs`) both the training rows and the serving path go through.

user_features  user_id -> user_segment, user_activity   daily snapshots, TTL 2 days
ad_features    ad_id   -> advertiser_id, ad_category, ad_quality, promoted
context        request -> site_id, device, hour, position  (arrives with the request)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from infra.features import FeatureRepo
from systems.ctr.data import EPOCH, MISSING_ACTIVITY, Market, activity_snapshots, ad_snapshot

# the categorical fields the model hashes, in input order, and the numeric ones
CAT_FIELDS = (
    "user_segment",
    "advertiser_id",
    "ad_category",
    "promoted",
    "site_id",
    "device",
    "hour",
    "position",
    "activity_bucket",  # derived from user_activity in model_inputs: lets LR learn a nonlinear effect
)
NUM_FIELDS = ("user_activity", "ad_quality")
N_BUCKETS = 1 << 14  # ~230 distinct values in the simulation: about one collision
USER_TTL = timedelta(days=2)
PROJECT = "ctr"


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A fast, well-mixed 64-bit hash (same value in every process, unlike Python's hash())."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_fields(values: np.ndarray, n_buckets: int = N_BUCKETS) -> np.ndarray:
    """(N, F) integer values -> (N, F) bucket ids in one shared table, salted per field."""
    values = np.asarray(values, dtype=np.int64)
    salts = splitmix64(np.arange(1, values.shape[1] + 1, dtype=np.uint64) * np.uint64(1_000_003))
    with np.errstate(over="ignore"):
        mixed = splitmix64(values.astype(np.uint64) ^ salts[None, :])
    return (mixed % np.uint64(n_buckets)).astype(np.int64)


ACTIVITY_EDGES = np.linspace(-2.5, 2.5, 11)


def activity_bucket(activity: np.ndarray, missing_activity: float = MISSING_ACTIVITY) -> np.ndarray:
    """Activity in 12 bins, and bin 99 for the missing sentinel (another fill value lands in a real bin)."""
    filled = np.where(np.isnan(activity), missing_activity, activity)
    return np.where(filled <= MISSING_ACTIVITY, 99, np.digitize(filled, ACTIVITY_EDGES)).astype(np.int64)


def model_inputs(
    frame: pd.DataFrame | Mapping[str, np.ndarray],
    missing_activity: float = MISSING_ACTIVITY,
    cat_fields: tuple[str, ...] = CAT_FIELDS,
    n_buckets: int = N_BUCKETS,
) -> tuple[np.ndarray, np.ndarray]:
    """Feature columns (a DataFrame, or a dict of arrays on the serving path) -> (cat (N, F) int64 bucket
    ids, num (N, 2) float32). The one transform training rows and requests both go through."""
    activity = np.asarray(frame["user_activity"], dtype=np.float64)
    derived = {"activity_bucket": activity_bucket(activity, missing_activity)}
    columns = [derived[f] if f in derived else np.asarray(frame[f], dtype=np.int64) for f in cat_fields]
    cat = hash_fields(np.stack(columns, axis=1), n_buckets)
    num = np.stack(
        [
            np.where(np.isnan(activity), missing_activity, activity),
            np.asarray(frame["ad_quality"], np.float64),
        ],
        axis=1,
    ).astype(np.float32)
    return cat, num


def logged_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The feature columns a correct pipeline gives a simulated impression (truth columns -> features).

    The Feast path must produce exactly these; tests/ctr/test_ctr_features.py checks it.
    """
    return frame.assign(user_activity=np.where(frame["is_new_user"], np.nan, frame["true_activity"]))


def definitions(user_parquet: Path, ad_parquet: Path) -> list:
    # Feast takes seconds to import: only the data step, which registers these, pays for it
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32, Int64

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    ad = Entity(name="ad", join_keys=["ad_id"], value_type=ValueType.INT64)
    user_view = FeatureView(
        name="user_features",
        entities=[user],
        ttl=USER_TTL,
        schema=[Field(name="user_segment", dtype=Int64), Field(name="user_activity", dtype=Float32)],
        source=FileSource(path=str(user_parquet), timestamp_field="event_timestamp"),
        online=True,
    )
    ad_view = FeatureView(
        name="ad_features",
        entities=[ad],
        ttl=timedelta(days=3650),
        schema=[
            Field(name="advertiser_id", dtype=Int64),
            Field(name="ad_category", dtype=Int64),
            Field(name="ad_quality", dtype=Float32),
            Field(name="promoted", dtype=Int64),
        ],
        source=FileSource(path=str(ad_parquet), timestamp_field="event_timestamp"),
        online=True,
    )
    return [
        user,
        ad,
        user_view,
        ad_view,
        FeatureService(name="ctr_user", features=[user_view]),
        FeatureService(name="ctr_ad", features=[ad_view]),
        FeatureService(name="ctr_training", features=[user_view, ad_view]),
    ]


def build_repo(
    market: Market,
    repo_dir: Path,
    online_store: str | None = None,
    redis_url: str | None = None,
    project: str = PROJECT,
    materialize_day: int | None = None,
) -> FeatureRepo:
    """Write the offline tables, register the views, and load the online store as of `materialize_day`."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    user_parquet, ad_parquet = repo_dir / "user_features.parquet", repo_dir / "ad_features.parquet"
    activity_snapshots(market).to_parquet(user_parquet)
    ad_snapshot(market).to_parquet(ad_parquet)
    repo = FeatureRepo(project, repo_dir / "repo", online_store=online_store, redis_url=redis_url)
    repo.apply(definitions(user_parquet, ad_parquet))
    day = market.config.n_days if materialize_day is None else materialize_day
    repo.materialize(EPOCH - timedelta(days=2), EPOCH + timedelta(days=day, seconds=1))
    return repo


ENTITY_COLUMNS = [
    "request_id",
    "user_id",
    "ad_id",
    "event_timestamp",
    "site_id",
    "device",
    "hour",
    "position",
]


def training_rows(repo: FeatureRepo, log: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: each logged impression gets user and ad features as of its own timestamp."""
    rows = log[[*ENTITY_COLUMNS, "click"]]
    # Feast keeps one row per (join key, timestamp) and drops a row any view misses: join each view on
    # its own distinct keys, then spread the values back over the log (a left join)
    for key, service in (("user_id", "ctr_user"), ("ad_id", "ctr_ad")):
        distinct = log[[key, "event_timestamp"]].drop_duplicates(ignore_index=True)
        features = repo.historical(distinct, repo.feature_service(service))
        rows = rows.merge(features, on=[key, "event_timestamp"], how="left", validate="many_to_one")
    return rows
