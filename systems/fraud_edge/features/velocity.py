"""Velocity features, defined once, computed two ways: in batch from history, incrementally online.

Two layers, so that nothing is written twice:

1. **Raw aggregates** (`RAW`): integers only — counts, sums of cents, sums of micro-degrees, seconds. The
   batch path computes them with sorted arrays and cumulative sums over the whole history
   (`batch_raw_aggregates`); the online path computes them per event from the state a store returns
   (`raw_from_state`, shared by the Redis store and the in-process edge store). Integers make the two
   paths comparable bit for bit: no float sum depends on the order it was added in.
2. **Model features** (`FEATURE_NAMES`): one function, `model_features(raw)`, turns raw aggregates into the
   float32 matrix the model reads. Batch calls it on (N,) arrays, the online path on (1,) arrays.

The skew guard (tests/fraud_edge/test_fraud_skew.py) replays one stream through both paths and asserts
the raw aggregates and the model features are identical, on the in-process store and on Redis.

Windows are event-time and half-open: an event at `ts` sees the earlier events of its card (terminal)
with `ts - w < ts_e <= ts`, itself included. Velocity is counted per card and per terminal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

WINDOWS = {"10m": 600, "1h": 3600, "24h": 86_400}
HORIZON_S = max(WINDOWS.values())  # state older than this is never read again
NO_HISTORY_SINCE_S = 30 * 86_400  # "time since last transaction" for a card never seen

RAW = (
    "amount_cents", "ts", "lat_e6", "lon_e6",
    *[f"card_cnt_{w}" for w in WINDOWS], *[f"card_amt_{w}" for w in WINDOWS],
    *[f"term_cnt_{w}" for w in WINDOWS], *[f"term_amt_{w}" for w in WINDOWS],
    "card_distinct_terms_24h", "card_since_last_s",
    "card_n_prev", "card_amt_prev", "card_lat_prev", "card_lon_prev",
)  # fmt: skip

FEATURE_NAMES = (
    "log_amount",
    *[f"card_cnt_{w}" for w in WINDOWS], *[f"card_log_amt_{w}" for w in WINDOWS],
    *[f"term_cnt_{w}" for w in WINDOWS], *[f"term_log_amt_{w}" for w in WINDOWS],
    "card_distinct_terms_24h", "log_since_last", "has_history", "amount_vs_card_mean",
    "log_km_from_usual", "hour_sin", "hour_cos",
)  # fmt: skip
N_FEATURES = len(FEATURE_NAMES)


def feature_spec() -> dict:
    """What a bundle records so the edge can refuse a model trained on different features."""
    spec = {"windows_s": WINDOWS, "raw": list(RAW), "features": list(FEATURE_NAMES), "dtype": "float32"}
    spec["spec_hash"] = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return spec


@dataclass(frozen=True)
class Transaction:
    """One card payment as the terminal sees it: EUR cents and the terminal's location in micro-degrees."""

    tx_id: str
    ts: int  # seconds, event time
    card_id: str
    terminal_id: str
    amount_cents: int
    lat_e6: int
    lon_e6: int


def transactions(df: pd.DataFrame) -> list[Transaction]:
    """Rows of the simulator's frame as Transactions, in stream order."""
    cols = ["tx_id", "ts", "card_id", "terminal_id", "amount_cents", "lat_e6", "lon_e6"]
    return [
        Transaction(a, int(b), c, d, int(e), int(f), int(g))
        for a, b, c, d, e, f, g in df[cols].itertuples(index=False, name=None)
    ]


# ---------------------------------------------------------------------------------------------------
# Layer 2: model features from raw aggregates (the one definition both paths call).
# ---------------------------------------------------------------------------------------------------


def model_features(raw: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N,) int arrays named by RAW -> (N, N_FEATURES) float32 in FEATURE_NAMES order."""
    f = {k: np.asarray(raw[k], dtype=np.float64) for k in RAW}
    n_prev = f["card_n_prev"]
    has_history = n_prev > 0
    safe_n = np.maximum(n_prev, 1.0)
    mean_prev = f["card_amt_prev"] / safe_n  # cents
    usual_lat = f["card_lat_prev"] / safe_n / 1e6
    usual_lon = f["card_lon_prev"] / safe_n / 1e6
    lat, lon = f["lat_e6"] / 1e6, f["lon_e6"] / 1e6
    # Equirectangular distance: plenty for "is this 1,000 km from where the card usually is".
    dx = (lon - usual_lon) * np.cos(np.radians((lat + usual_lat) / 2.0))
    km = 111.2 * np.sqrt(dx * dx + (lat - usual_lat) ** 2)
    since = np.where(f["card_since_last_s"] < 0, NO_HISTORY_SINCE_S, f["card_since_last_s"])
    hour = (f["ts"] % 86_400) / 3600.0
    cols = [
        np.log1p(f["amount_cents"] / 100.0),
        *[f[f"card_cnt_{w}"] for w in WINDOWS],
        *[np.log1p(f[f"card_amt_{w}"] / 100.0) for w in WINDOWS],
        *[f[f"term_cnt_{w}"] for w in WINDOWS],
        *[np.log1p(f[f"term_amt_{w}"] / 100.0) for w in WINDOWS],
        f["card_distinct_terms_24h"],
        np.log1p(np.minimum(since, NO_HISTORY_SINCE_S)),
        has_history.astype(np.float64),
        np.where(has_history, np.log((f["amount_cents"] + 100.0) / (mean_prev + 100.0)), 0.0),
        np.where(has_history, np.log1p(km), 0.0),
        np.sin(2 * np.pi * hour / 24.0),
        np.cos(2 * np.pi * hour / 24.0),
    ]
    return np.stack(cols, axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Layer 1a: raw aggregates in batch, over a whole history at once.
# ---------------------------------------------------------------------------------------------------


def _entity_windows(entity: np.ndarray, ts: np.ndarray, amount: np.ndarray) -> dict[str, np.ndarray]:
    """Per-entity counts/sums over each window, for every row, in the input's (stream) order."""
    n = len(ts)
    order = np.lexsort((np.arange(n), ts, entity))  # by entity, then time, then arrival
    big = int(ts.max()) + HORIZON_S + 1 if n else 1
    key = entity[order].astype(np.int64) * big + ts[order]  # sorted; entities far apart
    idx = np.arange(n)
    csum = np.concatenate([[0], np.cumsum(amount[order])])
    out: dict[str, np.ndarray] = {}
    for name, w in WINDOWS.items():
        left = np.searchsorted(key, key - w, side="right")  # first event with ts > now - w
        cnt, amt = np.empty(n, np.int64), np.empty(n, np.int64)
        cnt[order] = idx - left + 1
        amt[order] = csum[idx + 1] - csum[left]
        out[f"cnt_{name}"], out[f"amt_{name}"] = cnt, amt
    out["_order"], out["_left24"] = order, np.searchsorted(key, key - HORIZON_S, side="right")
    return out


def batch_raw_aggregates(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """RAW for every row of a stream-ordered frame (ts, card_id, terminal_id, amount_cents, lat_e6, lon_e6)."""
    ts = df["ts"].to_numpy(np.int64)
    amount = df["amount_cents"].to_numpy(np.int64)
    card = pd.factorize(df["card_id"])[0]
    term = pd.factorize(df["terminal_id"])[0]
    lat, lon = df["lat_e6"].to_numpy(np.int64), df["lon_e6"].to_numpy(np.int64)
    raw: dict[str, np.ndarray] = {"amount_cents": amount, "ts": ts, "lat_e6": lat, "lon_e6": lon}

    cw = _entity_windows(card, ts, amount)
    tw = _entity_windows(term, ts, amount)
    for w in WINDOWS:
        raw[f"card_cnt_{w}"], raw[f"card_amt_{w}"] = cw[f"cnt_{w}"], cw[f"amt_{w}"]
        raw[f"term_cnt_{w}"], raw[f"term_amt_{w}"] = tw[f"cnt_{w}"], tw[f"amt_{w}"]

    # Card history in (card, time, arrival) order: previous row of the same card, lifetime sums before it.
    order = cw["_order"]
    c_sorted = card[order]
    first = np.ones(len(order), bool)
    first[1:] = c_sorted[1:] != c_sorted[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    ts_s = ts[order]
    since = np.where(first, -1, ts_s - np.concatenate([[0], ts_s[:-1]]))
    n_prev = np.arange(len(order)) - group_start
    for name, values in (("amt", amount), ("lat", lat), ("lon", lon)):
        v = values[order]
        cs = np.cumsum(v)
        before_group = np.where(group_start > 0, cs[group_start - 1], 0)
        prev = np.empty(len(order), np.int64)
        prev[order] = cs - v - before_group
        raw[f"card_{name}_prev"] = prev
    raw["card_since_last_s"] = np.empty(len(order), np.int64)
    raw["card_since_last_s"][order] = since
    raw["card_n_prev"] = np.empty(len(order), np.int64)
    raw["card_n_prev"][order] = n_prev

    term_sorted = term[order].tolist()
    left24 = cw["_left24"].tolist()
    distinct = np.empty(len(order), np.int64)
    distinct[order] = [len(set(term_sorted[lo : i + 1])) for i, lo in enumerate(left24)]
    raw["card_distinct_terms_24h"] = distinct
    return raw


# ---------------------------------------------------------------------------------------------------
# Layer 1b: raw aggregates online, from the state a store returns for one event.
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardProfile:
    """Lifetime sums of a card before the current event."""

    n: int = 0
    amt: int = 0
    lat: int = 0
    lon: int = 0
    last_ts: int = -1


def raw_from_state(
    tx: Transaction,
    card_events: Sequence[tuple[int, int, str]],  # (ts, amount_cents, terminal_id), this event included
    term_events: Sequence[tuple[int, int]],  # (ts, amount_cents), this event included
    profile: CardProfile,
) -> dict[str, int]:
    """RAW for one event; events later than tx.ts (arrived early) are ignored, as in batch."""
    raw = {"amount_cents": tx.amount_cents, "ts": tx.ts, "lat_e6": tx.lat_e6, "lon_e6": tx.lon_e6}
    for name, w in WINDOWS.items():
        lo = tx.ts - w
        card_in = [e for e in card_events if lo < e[0] <= tx.ts]
        term_in = [e for e in term_events if lo < e[0] <= tx.ts]
        raw[f"card_cnt_{name}"] = len(card_in)
        raw[f"card_amt_{name}"] = sum(e[1] for e in card_in)
        raw[f"term_cnt_{name}"] = len(term_in)
        raw[f"term_amt_{name}"] = sum(e[1] for e in term_in)
        if name == "24h":
            raw["card_distinct_terms_24h"] = len({e[2] for e in card_in})
    raw["card_since_last_s"] = max(0, tx.ts - profile.last_ts) if profile.n > 0 else -1
    raw["card_n_prev"], raw["card_amt_prev"] = profile.n, profile.amt
    raw["card_lat_prev"], raw["card_lon_prev"] = profile.lat, profile.lon
    return raw


def raw_to_arrays(rows: Sequence[Mapping[str, int]]) -> dict[str, np.ndarray]:
    """A list of per-event RAW dicts -> the batch layout (one int64 array per name)."""
    return {k: np.array([r[k] for r in rows], dtype=np.int64) for k in RAW}
