"""Hostile input and bad artifacts at /score: 422 before any state changes, 409 for a reused tx_id, rules alone
for a corrupt LIVE bundle, a token on the admin routes, a loud warning for the demo bundle key."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient

from infra.config import get_settings
from infra.serving.testing import wait_ready
from systems.fraud_edge import bundle as bundle_mod
from systems.fraud_edge.serve import build_app

NOW = int(time.time())
TX = {
    "tx_id": "h1", "card_id": "cH", "terminal_id": "tH", "amount": 25.0,
    "currency": "EUR", "lat": 48.86, "lon": 2.35, "ts": NOW - 60,
}  # fmt: skip
TOKEN = "test-admin-token"


@pytest.fixture
def client(served_dir, monkeypatch):
    monkeypatch.setenv("MLSD_FRAUD_STORE", "memory")
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", TOKEN)
    get_settings.cache_clear()
    with TestClient(build_app()) as c:
        wait_ready(c)
        yield c


@pytest.mark.parametrize("ts", [NOW + 86_400 * 365, NOW - 86_400 * 3, 2**63, 2**70, -1, 10**30], ids=str)
def test_event_time_out_of_range_is_422_and_changes_nothing(client, ts) -> None:
    r = client.post("/score", json={**TX, "tx_id": "far", "card_id": "cFar", "ts": ts})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_error" and r.json()["fields"][0]["field"] == "ts"
    # nothing was recorded: the tx_id is free and the card has no history
    ok = client.post("/score", json={**TX, "tx_id": "far", "card_id": "cFar", "ts": NOW - 30})
    assert ok.status_code == 200 and not ok.json()["replayed"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"tx_id":"i","card_id":"c","terminal_id":"t","amount":1e400,"lat":0,"lon":0}',
        b'{"tx_id":"i","card_id":"c","terminal_id":"t","amount":NaN,"lat":0,"lon":0}',
        b'{"tx_id":"i","card_id":"c","terminal_id":"t","amount":1,"lat":0,"lon":0,"ts":1e30}',
        b'{"tx_id":"i","card_id":"c","terminal_id":"t","amount":1,"lat":0,"lon":0,"ts":' + b"9" * 400 + b"}",
    ],
    ids=["amount-inf", "amount-nan", "ts-float", "ts-400-digits"],
)
def test_numbers_beyond_the_store_are_422_at_the_schema(client, body) -> None:
    r = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert client.get("/readyz").status_code == 200  # no breaker tripped, nothing degraded


def test_reused_tx_id_with_another_payload_is_409_and_same_payload_replays(client) -> None:
    first = client.post("/score", json=TX).json()
    replay = client.post("/score", json={**TX, "ts": NOW - 10})
    assert replay.status_code == 200 and replay.json()["replayed"]
    assert (replay.json()["action"], replay.json()["score"]) == (first["action"], first["score"])
    for change in ({"card_id": "cOther"}, {"amount": 26.0}, {"terminal_id": "tOther"}):
        r = client.post("/score", json={**TX, **change})
        assert r.status_code == 409 and r.json()["error"] == "idempotency_conflict", r.text
    # the refused payload was not counted: cOther is a new card
    fresh = client.post("/score", json={**TX, "tx_id": "h2", "card_id": "cOther"}).json()
    assert not fresh["replayed"] and "card_testing" not in fresh["rules"]


def test_admin_routes_need_the_token(client) -> None:
    assert client.post("/bundle/reload", json={}).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert client.post("/bundle/reload", json={}, headers=bad).status_code == 401
    ok = client.post("/bundle/reload", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json() == {"serving": "v0001"}
    assert client.post("/journal/reconcile", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("damage", ["model", "manifest", "live"])
def test_corrupt_live_bundle_at_startup_serves_rules_only(served_dir, monkeypatch, damage) -> None:
    v1 = served_dir / "bundles" / "v0001"
    if damage == "model":
        (v1 / "model.onnx").write_bytes(b"garbage")
    elif damage == "manifest":
        (v1 / "manifest.json").write_text("{not json")
    else:
        (served_dir / "bundles" / "LIVE").write_text("v0042")  # names a version that is not there
    monkeypatch.setenv("MLSD_FRAUD_STORE", "memory")
    get_settings.cache_clear()
    with TestClient(build_app()) as c:
        wait_ready(c)
        r = c.post("/score", json={**TX, "amount": 5000.0})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == "rules_only" and body["score"] is None and body["bundle_version"] is None
        assert body["action"] == "review" and "large_amount" in body["rules"]


def test_missing_bundle_key_is_a_loud_warning(monkeypatch, caplog) -> None:
    monkeypatch.delenv("MLSD_FRAUD_BUNDLE_KEY", raising=False)
    monkeypatch.setattr(bundle_mod, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="mlsd.fraud"):
        key = bundle_mod.bundle_key()
    assert key == b"mlsd-dev-bundle-key"
    assert any("MLSD_FRAUD_BUNDLE_KEY is not set" in r.message for r in caplog.records)
    monkeypatch.setenv("MLSD_FRAUD_BUNDLE_KEY", "a-real-secret")
    assert bundle_mod.bundle_key() == b"a-real-secret"
