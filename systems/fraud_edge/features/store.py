"""Online velocity state: Redis (the cloud path, survives restarts) and in-process (the edge device).

Both stores do the same thing for one event, `update_and_read(tx)`:
  1. if tx.tx_id was seen, return the state snapshot stored for it (a replay is never counted twice,
     and it gets the same features it got the first time);
  2. else read the card's lifetime profile, append the event to the card's and terminal's last-24h
     event lists, trim events older than 24 h, update the profile, remember the snapshot by tx_id;
  3. the caller turns the snapshot into RAW with `raw_from_state`, the same code for both stores.

In Redis, steps 1-2 are one Lua script: one round trip, atomic, so two requests for the same card
cannot interleave between the read and the write.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from typing import Protocol

from systems.fraud_edge.features.velocity import (
    HORIZON_S,
    CardProfile,
    Transaction,
    raw_from_state,
)

DEDUP_TTL_S = 7 * 86_400  # how long a tx_id is remembered: longer than any retry or replay


class VelocityStore(Protocol):
    def update_and_read(self, tx: Transaction) -> tuple[dict[str, int], bool]:
        """RAW aggregates for tx (state updated once), and whether tx was a replay."""
        ...


class StoreUnavailable(RuntimeError):
    """The feature store cannot be reached; the message says what to run."""


class MemoryVelocityStore:
    """The edge device's own state: plain dicts and deques in the scorer's process."""

    def __init__(self, max_seen: int = 200_000) -> None:
        self.card_events: dict[str, deque[tuple[int, int, str]]] = {}
        self.term_events: dict[str, deque[tuple[int, int]]] = {}
        self.profiles: dict[str, CardProfile] = {}
        self.seen: OrderedDict[str, tuple] = OrderedDict()
        self.max_seen = max_seen

    def update_and_read(self, tx: Transaction) -> tuple[dict[str, int], bool]:
        snap = self.seen.get(tx.tx_id)
        if snap is not None:
            return raw_from_state(tx, *snap), True
        profile = self.profiles.get(tx.card_id, CardProfile())
        lo = tx.ts - HORIZON_S
        card = self.card_events.setdefault(tx.card_id, deque())
        card.append((tx.ts, tx.amount_cents, tx.terminal_id))
        term = self.term_events.setdefault(tx.terminal_id, deque())
        term.append((tx.ts, tx.amount_cents))
        for events in (card, term):  # same trim as Redis: drop ts <= now - 24h
            kept = [e for e in events if e[0] > lo]
            if len(kept) != len(events):
                events.clear()
                events.extend(kept)
        self.profiles[tx.card_id] = CardProfile(
            profile.n + 1,
            profile.amt + tx.amount_cents,
            profile.lat + tx.lat_e6,
            profile.lon + tx.lon_e6,
            tx.ts,
        )
        snap = (tuple(card), tuple(term), profile)
        self.seen[tx.tx_id] = snap
        if len(self.seen) > self.max_seen:
            self.seen.popitem(last=False)
        return raw_from_state(tx, *snap), False


# KEYS: card events zset, terminal events zset, card profile hash, seen-snapshot key.
# ARGV: tx_id, ts, amount_cents, terminal_id, lat_e6, lon_e6, horizon_s, ttl_s.
_UPDATE_LUA = """
local snap = redis.call('GET', KEYS[4])
if snap then return {1, snap} end
local ts = tonumber(ARGV[2])
local lo = ts - tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local p = redis.call('HMGET', KEYS[3], 'n', 'amt', 'lat', 'lon', 'last')
redis.call('ZADD', KEYS[1], ts, ARGV[1] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
redis.call('ZADD', KEYS[2], ts, ARGV[1] .. '|' .. ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', lo)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', lo)
local card = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. lo, '+inf', 'WITHSCORES')
local term = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. lo, '+inf', 'WITHSCORES')
redis.call('HINCRBY', KEYS[3], 'n', 1)
redis.call('HINCRBY', KEYS[3], 'amt', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'lat', ARGV[5])
redis.call('HINCRBY', KEYS[3], 'lon', ARGV[6])
redis.call('HSET', KEYS[3], 'last', ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
snap = cjson.encode({card = card, term = term, p = p})
redis.call('SET', KEYS[4], snap, 'EX', ttl)
return {0, snap}
"""


def _pairs(flat: list | dict) -> list[tuple[str, int]]:
    """ZRANGE WITHSCORES as a flat list [member, score, ...] -> [(member, score)] (cjson turns [] into {})."""
    flat = flat if isinstance(flat, list) else []
    return [(flat[i], int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]


class RedisVelocityStore:
    """Velocity state in Redis under `mlsd:fraud:<namespace>:`; survives a scorer restart."""

    def __init__(self, url: str, namespace: str = "default", ttl_s: int = DEDUP_TTL_S) -> None:
        import redis

        self.url = url
        self.prefix = f"mlsd:fraud:{namespace}:"
        self.ttl_s = ttl_s
        self.client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            self.client.ping()
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(
                f"Redis at {url} is not answering ({type(exc).__name__}); start it with `redis-server` "
                "or use the in-process edge store (--store memory)"
            ) from exc
        self._script = self.client.register_script(_UPDATE_LUA)

    def update_and_read(self, tx: Transaction) -> tuple[dict[str, int], bool]:
        p = self.prefix
        keys = [
            f"{p}card:{tx.card_id}",
            f"{p}term:{tx.terminal_id}",
            f"{p}prof:{tx.card_id}",
            f"{p}seen:{tx.tx_id}",
        ]
        args = [tx.tx_id, tx.ts, tx.amount_cents, tx.terminal_id, tx.lat_e6, tx.lon_e6, HORIZON_S, self.ttl_s]
        replayed, snap = self._script(keys=keys, args=args)
        state = json.loads(snap)
        card = [(ts, int(m.split("|")[1]), m.split("|", 2)[2]) for m, ts in _pairs(state["card"])]
        term = [(ts, int(m.split("|")[1])) for m, ts in _pairs(state["term"])]
        n, amt, lat, lon, last = (int(v) if v else 0 for v in state["p"])
        profile = CardProfile(n, amt, lat, lon, last if n else -1)
        return raw_from_state(tx, card, term, profile), bool(replayed)

    def clear(self) -> int:
        """Delete this namespace's keys (tests, bench restarts); returns how many."""
        keys = list(self.client.scan_iter(f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            self.client.delete(*keys[i : i + 500])
        return len(keys)

    def close(self) -> None:
        self.client.close()
