"""The feature store: Feast's point-in-time rows equal the truth-derived features; SQLite and Redis agree."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from systems.ctr.data import MISSING_ACTIVITY, simulate_log
from systems.ctr.features import (
    CAT_FIELDS,
    build_repo,
    hash_fields,
    logged_features,
    model_inputs,
    training_rows,
)

COMPARED = ["user_segment", "user_activity", "advertiser_id", "ad_category", "ad_quality", "promoted"]


def test_hashing_is_stable_and_field_salted() -> None:
    values = np.array([[1, 1, 1], [2, 2, 2]])
    a = hash_fields(values, 1 << 20)
    assert np.array_equal(a, hash_fields(values, 1 << 20))
    assert len(set(a[0].tolist())) == 3  # the same value in three fields: three buckets
    assert a.min() >= 0 and a.max() < 1 << 20


def test_model_inputs_fill_missing_activity_with_the_sentinel() -> None:
    frame = pd.DataFrame({c: [1, 2] for c in CAT_FIELDS if c != "activity_bucket"})
    frame["user_activity"] = [np.nan, 0.5]
    frame["ad_quality"] = [0.1, 0.2]
    cat, num = model_inputs(frame)
    assert num[0, 0] == MISSING_ACTIVITY and num[1, 0] == pytest.approx(0.5)
    assert cat.shape == (2, len(CAT_FIELDS)) and cat.dtype == np.int64
    _, num0 = model_inputs(frame, missing_activity=0.0)  # another default gives other inputs
    assert num0[0, 0] == 0.0


def test_point_in_time_rows_equal_the_features_at_impression_time(
    tmp_path: Path, unique_name: str, tiny_market
) -> None:
    log = simulate_log(tiny_market)
    repo = build_repo(tiny_market, tmp_path / "fs", online_store="sqlite", project=unique_name)
    rows = training_rows(repo, log)
    truth = logged_features(log)
    assert len(rows) == len(log) and rows["request_id"].tolist() == log["request_id"].tolist()
    for c in COMPARED:
        a, b = rows[c].to_numpy(np.float64), truth[c].to_numpy(np.float64)
        same = np.isclose(a, b, atol=1e-5) | (np.isnan(a) & np.isnan(b))
        assert same.all(), f"{c}: {np.mean(~same):.2%} of rows differ"
    # new users really have no activity yet (not a value from their future)
    assert rows.loc[log["is_new_user"].to_numpy(), "user_activity"].isna().all()


@pytest.mark.redis
def test_online_features_from_redis_equal_sqlite(
    tmp_path: Path, unique_name: str, tiny_market, redis_url: str
) -> None:
    sqlite = build_repo(tiny_market, tmp_path / "a", online_store="sqlite", project=unique_name)
    redis = build_repo(
        tiny_market, tmp_path / "b", online_store="redis", redis_url=redis_url, project=unique_name
    )
    users = [{"user_id": u} for u in range(0, 800, 37)]
    ads = [{"ad_id": a} for a in range(0, 120, 7)]
    for service, rows in (("ctr_user", users), ("ctr_ad", ads)):
        a, _ = sqlite.online(sqlite.feature_service(service), rows)
        b, _ = redis.online(redis.feature_service(service), rows)
        assert a == b
    values, _ = redis.online(redis.feature_service("ctr_ad"), ads)
    np.testing.assert_allclose(values["ad_quality"], tiny_market.ads["ad_quality"].to_numpy()[::7], rtol=1e-6)
