"""Online velocity state: Redis (the cloud path, survives restarts) and in-process (the edge device).

Both stores do the same thing for one event, `update_and_read(tx)`:
  1. if tx.tx_id was seen, return the RAW aggregates stored for it (a replay is never counted twice,
     and it gets the same features it got the first time);
  2. else read the card's lifetime profile, append the event to the card's and terminal's last-24h
     event lists, trim events older than 24 h, update the profile, compute RAW, remember it by tx_id.

The in-process store computes RAW with `raw_from_state` (Python). Redis computes it inside one Lua
script — one round trip, atomic (two requests for one card cannot interleave between read and write),
and only ~20 integers cross the wire and sit in the dedupe key, however busy the terminal. That makes
three implementations of RAW (batch numpy, Python, Lua); the skew guard proves all three agree.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from typing import Protocol

import redis

from infra.config import ServiceUnavailable
from systems.fraud_edge.features.velocity import (
    HORIZON_S,
    WINDOWS,
    CardProfile,
    Transaction,
    raw_from_state,
)

DEDUP_TTL_S = 7 * 86_400  # how long a tx_id is remembered: longer than any retry or replay


class VelocityStore(Protocol):
    def update_and_read(self, tx: Transaction) -> tuple[dict[str, int], bool]:
        """RAW aggregates for tx (state updated once), and whether tx was a replay."""
        ...


class StoreUnavailable(ServiceUnavailable):
    """The feature store cannot be reached; the message says what to run (one line, exit 1, from any step)."""


class MemoryVelocityStore:
    """The edge device's own state: plain dicts and deques in the scorer's process, bounded.

    A device has fixed memory, so every map is capped and evicts the least recently updated entry:
    an evicted card that comes back starts from an empty history (its features undercount, never
    overcount — the hard rules and the model then see a quieter card than the truth).
    """

    def __init__(self, max_seen: int = 200_000, max_entities: int = 100_000) -> None:
        self.card_events: OrderedDict[str, deque[tuple[int, int, str]]] = OrderedDict()
        self.term_events: OrderedDict[str, deque[tuple[int, int]]] = OrderedDict()
        self.profiles: OrderedDict[str, CardProfile] = OrderedDict()
        self.seen: OrderedDict[str, dict[str, int]] = OrderedDict()  # tx_id -> RAW
        self.max_seen = max_seen
        self.max_entities = max_entities

    def update_and_read(self, tx: Transaction) -> tuple[dict[str, int], bool]:
        done = self.seen.get(tx.tx_id)
        if done is not None:
            return done, True
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
        raw = raw_from_state(tx, card, term, profile)
        self.seen[tx.tx_id] = raw
        for entries, key, cap in (
            (self.card_events, tx.card_id, self.max_entities),
            (self.term_events, tx.terminal_id, self.max_entities),
            (self.profiles, tx.card_id, self.max_entities),
            (self.seen, tx.tx_id, self.max_seen),
        ):
            entries.move_to_end(key)  # most recently used last; evict from the front
            while len(entries) > cap:
                entries.popitem(last=False)
        return raw, False


# KEYS: card events zset, terminal events zset, card profile hash, seen key (RAW of a scored tx_id).
# ARGV: tx_id, ts, amount_cents, terminal_id, lat_e6, lon_e6, ttl_s, then the windows in seconds
# (the last is the horizon). Returns {replayed, json array of RAW_LUA}. Mirrors `raw_from_state`.
_UPDATE_LUA = """
local done = redis.call('GET', KEYS[4])
if done then return {1, done} end
local ts = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local ttl = tonumber(ARGV[7])
local windows = {}
for i = 8, #ARGV do windows[#windows + 1] = tonumber(ARGV[i]) end
local lo = ts - windows[#windows]
local p = redis.call('HMGET', KEYS[3], 'n', 'amt', 'lat', 'lon', 'last')
local n_prev = tonumber(p[1]) or 0
redis.call('ZADD', KEYS[1], ts, ARGV[1] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
redis.call('ZADD', KEYS[2], ts, ARGV[1] .. '|' .. ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', lo)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', lo)
local card = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. lo, ts, 'WITHSCORES')
local term = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. lo, ts, 'WITHSCORES')
local out = {}
for _, w in ipairs(windows) do
  local cc, ca, tc, ta, seen_terms, distinct = 0, 0, 0, 0, {}, 0
  for i = 1, #card, 2 do
    if tonumber(card[i + 1]) > ts - w then
      local amt, t = string.match(card[i], '^[^|]*|(%d+)|(.*)$')
      cc = cc + 1
      ca = ca + tonumber(amt)
      if not seen_terms[t] then seen_terms[t] = true; distinct = distinct + 1 end
    end
  end
  for i = 1, #term, 2 do
    if tonumber(term[i + 1]) > ts - w then
      tc = tc + 1
      ta = ta + tonumber(string.match(term[i], '|(%d+)$'))
    end
  end
  out[#out + 1] = cc; out[#out + 1] = ca; out[#out + 1] = tc; out[#out + 1] = ta
  out[#out + 1] = distinct
end
local since = -1
if n_prev > 0 then since = ts - tonumber(p[5]) end
out[#out + 1] = since
out[#out + 1] = n_prev
for i = 2, 4 do out[#out + 1] = tonumber(p[i]) or 0 end
redis.call('HINCRBY', KEYS[3], 'n', 1)
redis.call('HINCRBY', KEYS[3], 'amt', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'lat', ARGV[5])
redis.call('HINCRBY', KEYS[3], 'lon', ARGV[6])
redis.call('HSET', KEYS[3], 'last', ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
local encoded = cjson.encode(out)
redis.call('SET', KEYS[4], encoded, 'EX', ttl)
return {0, encoded}
"""
# The order the script writes its integers in: per window (card cnt, card amt, term cnt, term amt,
# distinct terminals), then since-last, n_prev, amt_prev, lat_prev, lon_prev.
_LUA_FIELDS = [
    *[f for w in WINDOWS for f in (f"card_cnt_{w}", f"card_amt_{w}", f"term_cnt_{w}", f"term_amt_{w}", f"_distinct_{w}")],
    "card_since_last_s", "card_n_prev", "card_amt_prev", "card_lat_prev", "card_lon_prev",
]  # fmt: skip


class RedisVelocityStore:
    """Velocity state in Redis under `mlsd:fraud:<namespace>:`; survives a scorer restart."""

    def __init__(self, url: str, namespace: str = "default", ttl_s: int = DEDUP_TTL_S) -> None:
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
        args = [
            tx.tx_id,
            tx.ts,
            tx.amount_cents,
            tx.terminal_id,
            tx.lat_e6,
            tx.lon_e6,
            self.ttl_s,
            *WINDOWS.values(),
        ]
        replayed, encoded = self._script(keys=keys, args=args)
        values = dict(zip(_LUA_FIELDS, json.loads(encoded), strict=True))
        raw = {"amount_cents": tx.amount_cents, "ts": tx.ts, "lat_e6": tx.lat_e6, "lon_e6": tx.lon_e6}
        raw.update({k: int(v) for k, v in values.items() if not k.startswith("_")})
        raw["card_distinct_terms_24h"] = int(values["_distinct_24h"])
        return raw, bool(replayed)

    def clear(self) -> int:
        """Delete this namespace's keys (tests, bench restarts); returns how many."""
        keys = list(self.client.scan_iter(f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            self.client.delete(*keys[i : i + 500])
        return len(keys)

    def close(self) -> None:
        self.client.close()
