"""Train/serving skew: the serving path replayed, its log joined to training rows, each cause caught."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from systems.ctr import skew
from systems.ctr.data import activity_snapshots, simulate_day
from systems.ctr.features import logged_features


@pytest.fixture(scope="module")
def replay_inputs(tiny_market):
    # training rows as the point-in-time join gives them (test_features proves logged_features == Feast rows)
    rows = logged_features(simulate_day(tiny_market, 3, n=400))
    return rows, activity_snapshots(tiny_market), skew.ad_table(tiny_market.ads)


def _mismatch(report: pd.DataFrame) -> dict[str, float]:
    return dict(zip(report["feature"], report["mismatch_rate"], strict=True))


def test_clean_serving_path_matches_training_rows(replay_inputs, tmp_path: Path) -> None:
    rows, snaps, ads = replay_inputs
    report = skew.run_case("clean", rows, snaps, ads, tmp_path)
    assert (report["joined_rows"] == len(rows)).all()
    assert max(_mismatch(report).values()) == 0.0


def test_missing_default_differs_exactly_on_users_without_activity(replay_inputs, tmp_path: Path) -> None:
    rows, snaps, ads = replay_inputs
    m = _mismatch(skew.run_case("missing-default", rows, snaps, ads, tmp_path))
    assert m["user_activity"] == pytest.approx(rows["user_activity"].isna().mean())
    assert m["user_activity"] > 0
    assert all(v == 0 for k, v in m.items() if k != "user_activity")


def test_timezone_shifts_every_hour(replay_inputs, tmp_path: Path) -> None:
    rows, snaps, ads = replay_inputs
    report = skew.run_case("timezone", rows, snaps, ads, tmp_path)
    m = _mismatch(report)
    assert m["hour"] == 1.0 and m["user_activity"] == 0.0
    assert report.set_index("feature").loc["hour", "jensen_shannon"] > 0.1  # distribution skew too


def test_leaky_join_shows_as_feature_skew_not_distribution_skew(replay_inputs, tmp_path: Path) -> None:
    rows, snaps, ads = replay_inputs
    report = skew.run_case("leaky-join", rows, snaps, ads, tmp_path).set_index("feature")
    assert report.loc["user_activity", "mismatch_rate"] > 0.8
    assert report.loc["user_activity", "psi"] < 0.1  # the marginal barely moves: only the row join finds it


def test_online_table_is_as_of(tiny_market) -> None:
    snaps = activity_snapshots(tiny_market)
    t = snaps["event_timestamp"].min() + pd.Timedelta(days=2)
    table = skew.online_user_table(snaps, t)
    assert (snaps.set_index("user_id").loc[table.index, "event_timestamp"].groupby(level=0).min() <= t).all()
    expected = snaps[snaps["event_timestamp"] == t].set_index("user_id")["user_activity"]
    common = expected.index.intersection(table.index)
    np.testing.assert_allclose(table.loc[common, "user_activity"], expected.loc[common])
