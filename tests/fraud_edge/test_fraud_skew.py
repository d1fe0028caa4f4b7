"""The skew guard: batch and online velocity features are identical on the same stream, on both stores."""

from __future__ import annotations

import numpy as np
import pytest

from systems.fraud_edge.data import SimConfig, simulate_transactions
from systems.fraud_edge.features import velocity
from systems.fraud_edge.features.store import MemoryVelocityStore, RedisVelocityStore
from systems.fraud_edge.features.velocity import (
    RAW,
    Transaction,
    batch_raw_aggregates,
    model_features,
    raw_to_arrays,
    transactions,
)

TINY = SimConfig.tiny()

N_EVENTS = 3000


@pytest.fixture(scope="module")
def stream():
    return simulate_transactions(TINY).iloc[:N_EVENTS].reset_index(drop=True)


def _assert_batch_equals_online(stream, store) -> None:
    batch_raw = batch_raw_aggregates(stream)
    online_rows = [store.update_and_read(tx)[0] for tx in transactions(stream)]
    online_raw = raw_to_arrays(online_rows)
    for name in RAW:
        mismatch = np.flatnonzero(batch_raw[name] != online_raw[name])
        assert mismatch.size == 0, f"{name} differs at rows {mismatch[:5]}"
    batch_x = model_features(batch_raw)
    online_x = np.concatenate(
        [model_features({k: v[i : i + 1] for k, v in online_raw.items()}) for i in range(len(stream))]
    )
    assert np.array_equal(batch_x, online_x)  # bit for bit, not allclose
    # The windows are not trivially empty: the stream has real velocity in it.
    assert batch_raw["card_cnt_24h"].max() >= 3 and batch_raw["term_cnt_1h"].max() >= 3


def test_batch_equals_online_in_process(stream) -> None:
    _assert_batch_equals_online(stream, MemoryVelocityStore())


@pytest.mark.redis
def test_batch_equals_online_redis(stream, redis_url, unique_name) -> None:
    store = RedisVelocityStore(redis_url, unique_name)
    try:
        _assert_batch_equals_online(stream, store)
    finally:
        store.clear()


@pytest.mark.redis
def test_batch_equals_online_redis_cluster(stream, redis_cluster_url, unique_name) -> None:
    """The same stream on a Redis Cluster: each script touches one slot (hash tags), and RAW is unchanged."""
    store = RedisVelocityStore(redis_cluster_url, unique_name, cluster=True)
    try:
        _assert_batch_equals_online(stream.iloc[:1500].reset_index(drop=True), store)
    finally:
        store.clear()


def test_skew_guard_catches_a_wrong_window(stream, monkeypatch) -> None:
    """The guard can fail: an online path with a 9-minute window is caught."""
    store = MemoryVelocityStore()
    online = [store.update_and_read(tx)[0] for tx in transactions(stream)]
    monkeypatch.setitem(velocity.WINDOWS, "10m", 540)
    batch = batch_raw_aggregates(stream)
    assert not np.array_equal(batch["card_cnt_10m"], raw_to_arrays(online)["card_cnt_10m"])


@pytest.mark.redis
def test_redis_state_survives_restart_and_replays_are_not_double_counted(
    stream, redis_url, unique_name
) -> None:
    txs = transactions(stream.iloc[:400])
    batch = batch_raw_aggregates(stream.iloc[:400].reset_index(drop=True))
    first = RedisVelocityStore(redis_url, unique_name)
    try:
        rows = [first.update_and_read(tx)[0] for tx in txs[:200]]
        first.close()
        second = RedisVelocityStore(redis_url, unique_name)  # a new process: only Redis remembers
        replays = [second.update_and_read(tx) for tx in txs[150:200]]  # a retry storm
        assert all(replayed for _, replayed in replays)
        assert [r for r, _ in replays] == rows[150:200]  # same features as the first time
        rows += [second.update_and_read(tx)[0] for tx in txs[200:]]
        online = raw_to_arrays(rows)
        for name in RAW:
            assert np.array_equal(online[name], batch[name]), name
    finally:
        first.clear()


def test_memory_store_replay_is_idempotent(stream) -> None:
    store = MemoryVelocityStore()
    txs = transactions(stream.iloc[:300])
    rows = [store.update_and_read(tx)[0] for tx in txs]
    again, replayed = store.update_and_read(txs[120])
    assert replayed and again == rows[120]
    nxt = store.update_and_read(txs[299].__class__(**{**txs[299].__dict__, "tx_id": "fresh"}))[0]
    assert nxt["card_n_prev"] == rows[299]["card_n_prev"] + 1  # the replay added nothing


def test_memory_store_is_bounded_and_evicts_least_recent() -> None:
    store = MemoryVelocityStore(max_seen=3, max_entities=2)
    for i, card in enumerate(["a", "b", "a", "c"]):  # "b" is the least recently used when "c" arrives
        store.update_and_read(Transaction(f"x{i}", 100 + i, card, f"t{card}", 1000, 0, 0))
    assert list(store.card_events) == ["a", "c"] and list(store.profiles) == ["a", "c"]
    assert len(store.term_events) == 2 and list(store.seen) == ["x1", "x2", "x3"]
    raw, _ = store.update_and_read(Transaction("x4", 200, "b", "tb", 1000, 0, 0))
    assert raw["card_n_prev"] == 0  # evicted: starts again (undercounts, never overcounts)
