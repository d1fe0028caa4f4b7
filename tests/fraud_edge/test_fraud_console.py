"""The fraud console: thresholds move the decisions and the held-out cost, a bad pair is a 422 that changes
nothing, a tampered bundle is refused with the old one serving, "Redis down" gives local features and a journal
that is reconciled when it is back; in headless Chromium, lowering the decline threshold raises the live decline
rate on the page."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from infra.config import get_settings
from infra.serving.browser import open_page
from infra.serving.testing import served_on_loopback, wait_ready
from systems.fraud_edge.serve import build_app

TOKEN = "fraud-console-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def tx(i: int, **change) -> dict:
    return {"tx_id": f"console-test-{uuid.uuid4().hex}-{i}", "card_id": f"c{i:06d}", "terminal_id": f"t{i % 50:05d}",
            "amount": 20.0 + i % 7, "currency": "EUR", "lat": 48.86, "lon": 2.35} | change  # fmt: skip


@pytest.fixture
def client(served_dir, monkeypatch):
    monkeypatch.setenv("MLSD_FRAUD_STORE", "memory")
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", TOKEN)
    get_settings.cache_clear()
    with TestClient(build_app()) as c:
        wait_ready(c)
        yield c


def test_thresholds_default_to_the_bundle_and_move_decisions_and_the_held_out_cost(client) -> None:
    state = client.get("/stats/series").json()
    live = client.app.state.resources.get().scorer.live.bundle.thresholds
    assert state["knobs"] == {
        k: min(live[k], 1.0) for k in ("review", "decline")
    }  # 1: never (the bundle's inf)
    at = state["extra"]["at"]
    assert (
        0 <= at["decline_rate"] < 0.2 and at["cost_eur"] > 0 and len(state["extra"]["curve"]["decline"]) > 5
    )
    before = [client.post("/score", json=tx(i)).json()["action"] for i in range(20)]
    assert before.count("decline") < 20
    client.post("/admin/knobs", json={"review": 0.0, "decline": 0.0}, headers=AUTH).raise_for_status()
    after = [client.post("/score", json=tx(100 + i)).json()["action"] for i in range(20)]
    assert after == ["decline"] * 20
    assert client.get("/stats/series").json()["extra"]["at"]["decline_rate"] == 1.0
    client.post("/admin/reset", headers=AUTH).raise_for_status()
    assert client.get("/stats/series").json()["knobs"] == state["knobs"]


@pytest.mark.parametrize("patch", [{"review": 0.9, "decline": 0.5}, {"decline": 1.5}, {"attack": "ddos"}])
def test_a_bad_setting_is_a_422_and_changes_nothing(client, patch) -> None:
    before = client.get("/stats/series").json()
    what = "faults" if "attack" in patch else "knobs"
    r = client.post(f"/admin/{what}", json=patch, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "validation_error", r.text
    after = client.get("/stats/series").json()
    assert (after["knobs"], after["faults"]) == (before["knobs"], before["faults"])


def test_a_tampered_bundle_is_refused_and_the_old_one_keeps_serving(client) -> None:
    version = client.post("/score", json=tx(1)).json()["bundle_version"]
    client.post("/admin/faults", json={"tampered_bundle": True}, headers=AUTH).raise_for_status()
    events = client.get("/stats/series").json()["events"]
    assert "tampered bundle refused" in events[-1]["text"] and "checksum" in events[-1]["text"]
    assert client.post("/score", json=tx(2)).json()["bundle_version"] == version


def test_redis_down_needs_a_redis_store(client) -> None:
    r = client.post("/admin/faults", json={"redis_down": True}, headers=AUTH)
    assert r.status_code == 422 and "MLSD_FRAUD_STORE=redis" in r.json()["message"]


@pytest.mark.redis
def test_redis_down_scores_locally_journals_and_reconciles(
    served_dir, redis_url_session, monkeypatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url_session)
    monkeypatch.setenv("MLSD_FRAUD_STORE", "redis")
    monkeypatch.setenv("MLSD_FRAUD_NAMESPACE", f"console-test-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", TOKEN)
    get_settings.cache_clear()
    with TestClient(build_app()) as client:
        wait_ready(client)
        assert client.post("/score", json=tx(1)).json()["degraded"] is None
        client.post("/admin/faults", json={"redis_down": True}, headers=AUTH).raise_for_status()
        down = [client.post("/score", json=tx(10 + i)).json()["degraded"] for i in range(5)]
        assert all(d and d.startswith("local_features") for d in down), down
        assert client.get("/stats/series").json()["extra"]["journal_pending"]
        client.post("/admin/reset", headers=AUTH).raise_for_status()
        deadline = time.monotonic() + 15  # the breaker's cooldown, then the first answer starts reconciling
        while not any("reconciled" in e["text"] for e in client.get("/stats/series").json()["events"]):
            assert time.monotonic() < deadline
            client.post("/score", json=tx(int(time.monotonic() * 1000)))
            time.sleep(0.3)
        done = [e["text"] for e in client.get("/stats/series").json()["events"] if "reconciled" in e["text"]]
        applied = int(done[-1].split(": ")[1].split(" applied")[0])
        assert applied >= 5 and "0 conflicts, 0 pending" in done[-1], (
            done
        )  # the 5, and those scored while the
        # breaker was still open after the reset (local too, so journaled too)


def test_lowering_the_decline_threshold_raises_the_decline_rate_in_chromium(
    served_dir, monkeypatch, tmp_path: Path, chromium: str
) -> None:
    monkeypatch.setenv("MLSD_FRAUD_STORE", "memory")
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", TOKEN)
    get_settings.cache_clear()
    with served_on_loopback(build_app()) as url, open_page(chromium, f"{url}/", tmp_path / "profile") as page:
        page.wait_for("!!window.mlsd && !!mlsd.series && !!document.getElementById('set-decline')")
        page.wait_for("document.getElementById('fraud-at').textContent.includes('EUR lost')")
        page.type_into("#token", TOKEN)
        page.click("#token-button")
        page.wait_for("document.getElementById('token-state').textContent === 'unlocked'")
        page.type_into("#traffic-rate", "30")
        page.click("#traffic-start")
        rate = "(mlsd.series.gauges.decline_rate || []).filter(v => v !== null)"
        page.wait_for(f"{rate}.length >= 2", timeout_s=30)
        assert page.js(f"{rate}.slice(-1)[0]") < 0.5
        for name in ("review", "decline"):
            page.type_into(f"#set-{name}", "0")
            page.js(f"document.getElementById('set-{name}').blur()")
            page.wait_for(f"mlsd.state.knobs.{name} === 0", timeout_s=10)
        page.wait_for(f"{rate}.slice(-1)[0] === 1", timeout_s=30)
        assert "decline rate 100.00%" in page.js("document.getElementById('fraud-at').textContent")
        page.click("#traffic-stop")
        assert page.errors == []
