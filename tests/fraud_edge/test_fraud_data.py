"""Data tests: fraud rate, temporal split with a label-delay gap, no leakage, the public CSV loader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from systems.fraud_edge.data import (
    CREDITCARD_COLUMNS,
    DAY,
    SimConfig,
    creditcard_time_split,
    labels_known_at,
    load_creditcard_csv,
    simulate_transactions,
    temporal_split,
)

TINY = SimConfig.tiny()


@pytest.fixture(scope="module")
def stream() -> pd.DataFrame:
    return simulate_transactions(TINY)


def test_fraud_rate_and_patterns(stream: pd.DataFrame) -> None:
    assert 0.002 <= stream["is_fraud"].mean() <= 0.01
    assert set(stream.loc[stream.is_fraud == 1, "fraud_type"]) >= {"card_testing", "account_takeover"}
    assert stream["tx_id"].is_unique
    assert (stream["ts"].diff().dropna() >= 0).all(), "stream must be in event-time order"
    assert (stream["amount_cents"] > 0).all()


def test_same_seed_same_stream(stream: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(stream, simulate_transactions(TINY))


def test_split_is_temporal_with_label_delay_gap(stream: pd.DataFrame) -> None:
    s = temporal_split(stream)
    ts = stream["ts"].to_numpy()
    assert not set(s.train) & set(s.valid) and not set(s.valid) & set(s.test)
    assert ts[s.train].max() < ts[s.valid].min()
    assert ts[s.test].min() - ts[s.valid].max() >= 7 * DAY - 1  # the gap where labels are immature
    assert s.label_cutoff <= ts[s.test].min()  # the model never sees a test-time label


def test_labels_known_at_cutoff_hide_late_chargebacks(stream: pd.DataFrame) -> None:
    s = temporal_split(stream)
    known = labels_known_at(stream, s.label_cutoff)
    truth = stream["is_fraud"].to_numpy()
    assert np.all(known <= truth)  # never invents fraud
    late = (truth == 1) & (stream["label_ts"].to_numpy() > s.label_cutoff)
    assert late.any() and np.all(known[late] == 0)


def test_creditcard_loader_reads_the_public_layout(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 50
    df = pd.DataFrame(rng.standard_normal((n, 28)), columns=[f"V{i}" for i in range(1, 29)])
    df.insert(0, "Time", rng.permutation(n) * 10.0)
    df["Amount"] = rng.uniform(0, 500, n).round(2)
    df["Class"] = (rng.random(n) < 0.1).astype(int)
    path = tmp_path / "creditcard.csv"
    df.to_csv(path, index=False)
    loaded = load_creditcard_csv(path)
    assert list(loaded.columns) == CREDITCARD_COLUMNS
    assert loaded["Time"].is_monotonic_increasing and len(loaded) == n
    train, test = creditcard_time_split(loaded)
    assert loaded["Time"].iloc[train].max() < loaded["Time"].iloc[test].min()


def test_creditcard_loader_names_missing_columns(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    pd.DataFrame({"Time": [0.0], "Amount": [1.0], "Class": [0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing columns"):
        load_creditcard_csv(path)
