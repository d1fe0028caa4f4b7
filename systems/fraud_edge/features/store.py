"""Online velocity state: Redis or Redis Cluster (the cloud path, survives restarts) and in-process (the edge).

Every store does the same thing for one event, `update_and_read(tx)`:
  0. the idempotency key: tx_id is bound to its payload (card, terminal, amount). A tx_id seen with another
     payload raises `IdempotencyConflict` (the server answers 409) and changes nothing;
  1. if tx.tx_id was seen with this payload, return the RAW aggregates stored for it (a replay is never counted
     twice, and it gets the same features, hence the same decision, it got the first time);
  2. else read the card's lifetime profile, append the event to the card's and terminal's event lists, trim
     events older than `retain_s` before the event, update the profile, compute RAW, remember it by tx_id.

`retain_s` is the 24 h horizon plus the event-time slack the server accepts (max lateness + future skew): an
event admitted later can still be up to that much older than this one, and must find its whole window. So no
accepted request's event time can trim history another accepted request reads (the property tests check it).

Keys (Redis), with hash tags so that each script touches one Cluster slot:
    <p>{tx:<tx_id>}               the claim: the payload fingerprint of a tx_id (SET NX GET, one command)
    <p>{t:<terminal>}:ev          the terminal's events (zset)                   — terminal script
    <p>{c:<card>}:ev, :prof, :seen:<tx_id>   the card's events, profile, RAW of each scored tx_id — card script
On a cluster the order is claim → terminal script → card script (three calls, one slot each); DESIGN.md
("Redis Cluster") says what atomicity that gives up. A single Redis runs the same steps in one script.
The in-process store computes RAW with `raw_from_state` (Python), Redis inside the two Lua scripts; the skew
guard proves the implementations agree.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from typing import Protocol, TypeVar, cast

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


def fingerprint(tx: Transaction) -> str:
    """What a tx_id is bound to. Event time is not part of it: a retry that lets the server pick the time
    (no `ts`) is the same transaction."""
    return f"{tx.card_id}|{tx.terminal_id}|{tx.amount_cents}"


class IdempotencyConflict(ValueError):
    """A tx_id already scored with another payload: the request's fault (409), never the store's."""

    def __init__(self, tx_id: str) -> None:
        super().__init__(
            f"tx_id {tx_id!r} was already used for another transaction (card, terminal or amount differ); "
            "a retry must send the same payload, a new transaction a new tx_id"
        )
        self.tx_id = tx_id


# a card's event (ts, cents, terminal), a terminal's (ts, cents)
Event = TypeVar("Event", tuple[int, int, str], tuple[int, int])


def _trim(events: deque[Event], lo: int) -> None:
    """Drop the events at or before `lo` (ts <= lo), in place; late events mean the deque is not sorted by ts."""
    kept = [e for e in events if e[0] > lo]
    if len(kept) != len(events):
        events.clear()
        events.extend(kept)


class VelocityStore(Protocol):
    def update_and_read(self, tx: Transaction) -> tuple[dict[str, int], bool]:
        """RAW aggregates for tx (state updated once), and whether tx was a replay; IdempotencyConflict when
        tx_id was seen with another payload."""
        ...


class StoreUnavailable(ServiceUnavailable):
    """The feature store cannot be reached; the message says what to run (one line, exit 1, from any step)."""


class MemoryVelocityStore:
    """The edge device's own state: plain dicts and deques in the scorer's process, bounded.

    A device has fixed memory, so every map is capped and evicts the least recently updated entry:
    an evicted card that comes back starts from an empty history (its features undercount, never
    overcount — the hard rules and the model then see a quieter card than the truth).
    """

    def __init__(
        self, max_seen: int = 200_000, max_entities: int = 100_000, retain_s: int = HORIZON_S
    ) -> None:
        self.card_events: OrderedDict[str, deque[tuple[int, int, str]]] = OrderedDict()
        self.term_events: OrderedDict[str, deque[tuple[int, int]]] = OrderedDict()
        self.profiles: OrderedDict[str, CardProfile] = OrderedDict()
        self.seen: OrderedDict[str, tuple[str, dict[str, int]]] = OrderedDict()  # tx_id -> (fingerprint, RAW)
        self.max_seen = max_seen
        self.max_entities = max_entities
        self.retain_s = max(int(retain_s), HORIZON_S)

    def update_and_read(self, tx: Transaction) -> tuple[dict[str, int], bool]:
        fp = fingerprint(tx)
        done = self.seen.get(tx.tx_id)
        if done is not None:
            if done[0] != fp:
                raise IdempotencyConflict(tx.tx_id)
            return done[1], True
        profile = self.profiles.get(tx.card_id, CardProfile())
        lo = tx.ts - self.retain_s
        card = self.card_events.setdefault(tx.card_id, deque())
        card.append((tx.ts, tx.amount_cents, tx.terminal_id))
        term = self.term_events.setdefault(tx.terminal_id, deque())
        term.append((tx.ts, tx.amount_cents))
        _trim(card, lo)  # same trim as Redis: drop ts <= ts - retain_s
        _trim(term, lo)
        self.profiles[tx.card_id] = CardProfile(
            profile.n + 1,
            profile.amt + tx.amount_cents,
            profile.lat + tx.lat_e6,
            profile.lon + tx.lon_e6,
            max(tx.ts, profile.last_ts) if profile.n else tx.ts,
        )
        raw = raw_from_state(tx, card, term, profile)
        self.seen[tx.tx_id] = (fp, raw)
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


# The terminal's slot. KEYS: terminal events zset. ARGV: tx_id, ts, amount_cents, ttl_s, retain_s, then the
# windows in seconds (the last is the horizon). The member is tx_id|amount, so a re-run (a retry after a crash
# between the scripts, a reconciliation) adds nothing. Returns a json array: per window (count, amount).
_TERMINAL_LUA = """
local ts = tonumber(ARGV[2])
local windows = {}
for i = 6, #ARGV do windows[#windows + 1] = tonumber(ARGV[i]) end
redis.call('ZADD', KEYS[1], ts, ARGV[1] .. '|' .. ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ts - tonumber(ARGV[5]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
local term = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (ts - windows[#windows]), ts, 'WITHSCORES')
local out = {}
for _, w in ipairs(windows) do
  local tc, ta = 0, 0
  for i = 1, #term, 2 do
    if tonumber(term[i + 1]) > ts - w then
      tc = tc + 1
      ta = ta + tonumber(string.match(term[i], '|(%d+)$'))
    end
  end
  out[#out + 1] = tc; out[#out + 1] = ta
end
return cjson.encode(out)
"""

# The card's slot. KEYS: card events zset, card profile hash, seen key (RAW of a scored tx_id).
# ARGV: tx_id, ts, amount_cents, terminal_id, lat_e6, lon_e6, ttl_s, retain_s, terminal json (from the terminal
# script), then the windows. Returns {replayed, json array of _LUA_FIELDS}. Mirrors `raw_from_state`.
_CARD_LUA = """
local done = redis.call('GET', KEYS[3])
if done then return {1, done} end
local ts = tonumber(ARGV[2])
local ttl = tonumber(ARGV[7])
local termc = cjson.decode(ARGV[9])
local windows = {}
for i = 10, #ARGV do windows[#windows + 1] = tonumber(ARGV[i]) end
local p = redis.call('HMGET', KEYS[2], 'n', 'amt', 'lat', 'lon', 'last')
local n_prev = tonumber(p[1]) or 0
redis.call('ZADD', KEYS[1], ts, ARGV[1] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ts - tonumber(ARGV[8]))
local card = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (ts - windows[#windows]), ts, 'WITHSCORES')
local out = {}
for k, w in ipairs(windows) do
  local cc, ca, seen_terms, distinct = 0, 0, {}, 0
  for i = 1, #card, 2 do
    if tonumber(card[i + 1]) > ts - w then
      local amt, t = string.match(card[i], '^[^|]*|(%d+)|(.*)$')
      cc = cc + 1
      ca = ca + tonumber(amt)
      if not seen_terms[t] then seen_terms[t] = true; distinct = distinct + 1 end
    end
  end
  out[#out + 1] = cc; out[#out + 1] = ca
  out[#out + 1] = termc[2 * k - 1]; out[#out + 1] = termc[2 * k]
  out[#out + 1] = distinct
end
local since = -1
local last = tonumber(p[5])
if n_prev > 0 then since = math.max(0, ts - last) end
out[#out + 1] = since
out[#out + 1] = n_prev
for i = 2, 4 do out[#out + 1] = tonumber(p[i]) or 0 end
out[#out + 1] = ts; out[#out + 1] = tonumber(ARGV[5]); out[#out + 1] = tonumber(ARGV[6])
redis.call('HINCRBY', KEYS[2], 'n', 1)
redis.call('HINCRBY', KEYS[2], 'amt', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'lat', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'lon', ARGV[6])
if n_prev == 0 or ts > last then redis.call('HSET', KEYS[2], 'last', ARGV[2]) end
for i = 1, 2 do redis.call('EXPIRE', KEYS[i], ttl) end
local encoded = cjson.encode(out)
redis.call('SET', KEYS[3], encoded, 'EX', ttl)
return {0, encoded}
"""
# A single Redis (no slots to respect) runs the same three steps in one script: one round trip, and atomic.
# KEYS: claim, terminal events, card events, card profile, seen. ARGV: as the card script's, with the
# fingerprint in place of the terminal json. Returns {0|1, json}, or {2, ""} for a tx_id bound to another payload.
_SINGLE_LUA = (
    "local function terminal(KEYS, ARGV)\n" + _TERMINAL_LUA + "\nend\n"
    "local function card(KEYS, ARGV)\n" + _CARD_LUA + "\nend\n"
    """
local before = redis.call('GET', KEYS[1])
if before then
  if before ~= ARGV[9] then return {2, ''} end
  local done = redis.call('GET', KEYS[5])
  if done then return {1, done} end
end
redis.call('SET', KEYS[1], ARGV[9], 'EX', tonumber(ARGV[7]))
local targs = {ARGV[1], ARGV[2], ARGV[3], ARGV[7], ARGV[8]}
for i = 10, #ARGV do targs[#targs + 1] = ARGV[i] end
local cargs = {}
for i = 1, #ARGV do cargs[i] = ARGV[i] end
cargs[9] = terminal({KEYS[2]}, targs)
return card({KEYS[3], KEYS[4], KEYS[5]}, cargs)
"""
)

# The order the card script writes its integers in: per window (card cnt, card amt, term cnt, term amt,
# distinct terminals), then since-last, n_prev, amt_prev, lat_prev, lon_prev, and the event's own ts, lat, lon
# (a replay gets the first answer's, whatever time the retry carries).
_LUA_FIELDS = [
    *[f for w in WINDOWS for f in (f"card_cnt_{w}", f"card_amt_{w}", f"term_cnt_{w}", f"term_amt_{w}", f"_distinct_{w}")],
    "card_since_last_s", "card_n_prev", "card_amt_prev", "card_lat_prev", "card_lon_prev",
    "ts", "lat_e6", "lon_e6",
]  # fmt: skip


class RedisVelocityStore:
    """Velocity state in Redis (or a Redis Cluster: `cluster=True`) under `mlsd:fraud:<namespace>:`; survives a
    scorer restart. Socket timeouts are `timeout_s` (the server sets them at its request deadline), so a hung
    Redis frees the calling thread soon after the request has moved on."""

    def __init__(
        self,
        url: str,
        namespace: str = "default",
        ttl_s: int = DEDUP_TTL_S,
        *,
        cluster: bool = False,
        retain_s: int = HORIZON_S,
        timeout_s: float = 1.0,
    ) -> None:
        self.url = url
        self.prefix = f"mlsd:fraud:{namespace}:"
        self.ttl_s = ttl_s
        self.retain_s = max(int(retain_s), HORIZON_S)
        self.cluster = cluster
        kwargs = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
        self.client: redis.Redis | redis.RedisCluster
        try:
            if cluster:
                self.client = redis.RedisCluster.from_url(url, **kwargs)
            else:
                self.client = redis.Redis.from_url(url, **kwargs)
            self.client.ping()
        except (
            redis.exceptions.RedisError,
            redis.exceptions.RedisClusterException,
        ) as exc:  # not a RedisError
            start = "mlsd redis-cluster start" if cluster else "redis-server --daemonize yes"
            raise StoreUnavailable(
                f"Redis{' Cluster' if cluster else ''} at {url} is not answering ({type(exc).__name__}); start "
                f"it with `{start}` or use the in-process edge store (--store memory)"
            ) from exc
        # redis-py types register_script's self as Redis; RedisCluster has it too (a script runs on its keys' node)
        scripting = cast(redis.Redis, self.client)
        self._terminal = scripting.register_script(_TERMINAL_LUA)
        self._card = scripting.register_script(_CARD_LUA)
        self._single = scripting.register_script(_SINGLE_LUA)
        if not cluster:  # loaded now, so the first request does not pay the NOSCRIPT round trip
            self.client.script_load(_SINGLE_LUA)

    def keys(self, tx: Transaction) -> dict[str, str]:
        p = self.prefix
        card = f"{p}{{c:{tx.card_id}}}"
        return {
            "claim": f"{p}{{tx:{tx.tx_id}}}",
            "term": f"{p}{{t:{tx.terminal_id}}}:ev",
            "card": f"{card}:ev",
            "prof": f"{card}:prof",
            "seen": f"{card}:seen:{tx.tx_id}",
        }

    def update_and_read(self, tx: Transaction) -> tuple[dict[str, int], bool]:
        k = self.keys(tx)
        fp = fingerprint(tx)
        windows = list(WINDOWS.values())
        # the transaction as both paths' card scripts take it, then the retention
        tx_args: list[str | int] = [tx.tx_id, tx.ts, tx.amount_cents, tx.terminal_id, tx.lat_e6, tx.lon_e6,
                                    self.ttl_s, self.retain_s]  # fmt: skip
        if not self.cluster:  # one node: the three steps in one atomic script, one round trip
            keys = [k["claim"], k["term"], k["card"], k["prof"], k["seen"]]
            status, encoded = self._single(keys=keys, args=[*tx_args, fp, *windows])
            if status == 2:
                raise IdempotencyConflict(tx.tx_id)
            return self._raw(tx, encoded), bool(status)
        # redis-py types a reply as `Awaitable | Any` (its sync and async clients share the signatures): bytes here
        before = cast(bytes | None, self.client.set(k["claim"], fp, nx=True, get=True, ex=self.ttl_s))
        if before is not None:
            if before.decode() != fp:
                raise IdempotencyConflict(tx.tx_id)
            done = cast(bytes | None, self.client.get(k["seen"]))
            if done is not None:
                return self._raw(tx, done), True
            # claimed, never finished (a crash between the scripts): finish it; the scripts are idempotent
        term = self._terminal(
            keys=[k["term"]], args=[tx.tx_id, tx.ts, tx.amount_cents, self.ttl_s, self.retain_s, *windows]
        )
        replayed, encoded = self._card(
            keys=[k["card"], k["prof"], k["seen"]], args=[*tx_args, term, *windows]
        )
        return self._raw(tx, encoded), bool(replayed)

    def _raw(self, tx: Transaction, encoded: bytes | str) -> dict[str, int]:
        values = dict(zip(_LUA_FIELDS, json.loads(encoded), strict=True))
        raw = {"amount_cents": tx.amount_cents}
        raw.update({k: int(v) for k, v in values.items() if not k.startswith("_")})
        raw["card_distinct_terms_24h"] = int(values["_distinct_24h"])
        return raw

    def has(self, tx: Transaction) -> bool:
        """Whether tx is counted in the velocity state (its RAW is stored under its card)."""
        return bool(self.client.exists(self.keys(tx)["seen"]))

    def clear(self) -> int:
        """Delete this namespace's keys (tests, bench restarts); returns how many."""
        if isinstance(self.client, redis.RedisCluster):
            keys = [
                key
                for node in self.client.get_primaries()
                for key in self.client.get_redis_connection(node).scan_iter(f"{self.prefix}*", count=1000)
            ]
            for key in keys:
                self.client.delete(key)
            return len(keys)
        keys = list(self.client.scan_iter(f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            self.client.delete(*keys[i : i + 500])
        return len(keys)

    def close(self) -> None:
        self.client.close()
