"""The idempotency key and the event-time slack, on every store (in-process, Redis, Redis Cluster), and the
hypothesis properties: another request's event time never lowers a card's counts; a replay gets the same answer;
a reused tx_id with another payload is refused and changes nothing."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from systems.fraud_edge.features.store import IdempotencyConflict, MemoryVelocityStore, RedisVelocityStore
from systems.fraud_edge.features.velocity import HORIZON_S, WINDOWS, Transaction

NOW = 1_700_000_000
LATENESS, FUTURE = 2 * 86_400, 300  # more than a day late: the slack matters
RETAIN = HORIZON_S + LATENESS + FUTURE
STORES = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", marks=pytest.mark.redis),
]
COUNTS = [f"{e}_cnt_{w}" for e in ("card", "term") for w in WINDOWS]


@pytest.fixture(params=STORES)
def make_store(request):
    """A factory of empty stores of one kind (a fresh namespace each), cleared at the end."""
    made: list = []
    url = None
    if request.param != "memory":
        url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")

    def make():
        if request.param == "memory":
            return MemoryVelocityStore(retain_s=RETAIN)
        store = RedisVelocityStore(
            url, "t" + uuid.uuid4().hex[:10], cluster=request.param == "redis_cluster", retain_s=RETAIN
        )
        made.append(store)
        return store

    yield make
    for store in made:
        store.clear()
        store.close()


def tx(tx_id: str, ts: int, card: str = "cA", term: str = "t1", cents: int = 1000) -> Transaction:
    return Transaction(tx_id, ts, card, term, cents, 48_000_000, 2_000_000)


def test_replay_is_same_raw_and_reuse_with_other_payload_is_refused(make_store) -> None:
    store = make_store()
    first, replayed = store.update_and_read(tx("a", NOW))
    assert not replayed
    again, replayed = store.update_and_read(tx("a", NOW + 5))  # a retry; the time is not part of the key
    assert replayed and again == first
    for other in (tx("a", NOW, card="cB"), tx("a", NOW, term="t2"), tx("a", NOW, cents=999)):
        with pytest.raises(IdempotencyConflict):
            store.update_and_read(other)
    raw, _ = store.update_and_read(tx("b", NOW + 1, card="cB", term="t2"))  # nothing of the refused was kept
    assert raw["card_cnt_24h"] == 1 and raw["term_cnt_24h"] == 1


def test_late_event_still_finds_history_another_request_would_have_trimmed(make_store) -> None:
    """An event a day late reads its 24 h window; a newer event, scored before it, must not have trimmed it."""
    store = make_store()
    store.update_and_read(tx("old", NOW - LATENESS))
    store.update_and_read(tx("new", NOW + FUTURE))  # 2 days later: the old design trimmed "old" here
    raw, _ = store.update_and_read(tx("late", NOW - LATENESS + 3600))
    assert raw["card_cnt_24h"] == 2 and raw["term_cnt_24h"] == 2


# event times relative to the clock: anywhere admitted, with the window edges drawn often
offsets = st.one_of(
    st.sampled_from(
        [-LATENESS, -LATENESS + 3600, -HORIZON_S - 1, -HORIZON_S, -HORIZON_S + 1, -3600, 0, FUTURE]
    ),
    st.integers(-LATENESS, FUTURE),
)


def _counts(store, events, probe) -> dict[str, int]:
    for e in events:
        store.update_and_read(e)
    raw, _ = store.update_and_read(probe)
    return {k: raw[k] for k in COUNTS}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.lists(offsets, max_size=6),
    intruder=offsets,
    intruder_card=st.sampled_from(["cA", "cB"]),
    intruder_term=st.sampled_from(["t1", "t2"]),
    probe=offsets,
)
# the case the old design lost: a newer event trimmed, by its own time, history a late event still reads
@example(base=[-150_000], intruder=0, intruder_card="cB", intruder_term="t1", probe=-100_000)
def test_property_counts_never_drop_because_of_another_requests_event_time(
    make_store, base, intruder, intruder_card, intruder_term, probe
) -> None:
    events = [tx(f"e{i}", NOW + o) for i, o in enumerate(base)]
    probe_tx = tx("probe", NOW + probe)
    without = _counts(make_store(), events, probe_tx)
    other = tx("x", NOW + intruder, card=intruder_card, term=intruder_term)
    with_other = _counts(make_store(), [*events, other], probe_tx)
    for k in COUNTS:
        assert with_other[k] >= without[k], (k, with_other, without)
    if intruder_card != "cA":
        assert all(with_other[k] == without[k] for k in COUNTS if k.startswith("card"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    times=st.lists(offsets, min_size=1, max_size=6),
    pick=st.integers(0, 5),
    change=st.sampled_from(["card", "term", "cents"]),
)
def test_property_replay_same_answer_reuse_refused_and_harmless(make_store, times, pick, change) -> None:
    store, reference = make_store(), make_store()
    events = [tx(f"e{i}", NOW + o, term=f"t{i % 2}") for i, o in enumerate(times)]
    answers = [store.update_and_read(e)[0] for e in events]
    for e in events:
        reference.update_and_read(e)
    e = events[pick % len(events)]
    raw, replayed = store.update_and_read(e)
    assert replayed and raw == answers[pick % len(events)]
    other = Transaction(
        e.tx_id,
        e.ts,
        e.card_id + "z" if change == "card" else e.card_id,
        e.terminal_id + "z" if change == "term" else e.terminal_id,
        e.amount_cents + 1 if change == "cents" else e.amount_cents,
        e.lat_e6,
        e.lon_e6,
    )
    with pytest.raises(IdempotencyConflict):
        store.update_and_read(other)
    probe = tx("probe", NOW, card=other.card_id, term=other.terminal_id)
    assert store.update_and_read(probe)[0] == reference.update_and_read(probe)[0]
