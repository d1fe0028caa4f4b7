"""The recsys console: nprobe moves live recall@100 against exact search, the ranker and the creator cap change the
feed, "online store down" turns answers degraded and reset brings them back, bad knobs are a 422 that changes
nothing; and in headless Chromium, the page with generated traffic, nprobe and the store-down switch."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from infra.config import get_settings
from infra.serving.browser import open_page
from infra.serving.console import TRAFFIC_HEADER
from infra.serving.testing import served_on_loopback, wait_ready
from systems.recsys_two_tower import data
from systems.recsys_two_tower.serve import build_app

TOKEN = "recsys-console-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def console_env(recsys_env, monkeypatch):
    monkeypatch.setenv("MLSD_RECSYS_FEATURE_DEADLINE_MS", "3000")
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", TOKEN)
    get_settings.cache_clear()
    return recsys_env


@pytest.fixture
def client(console_env):
    with TestClient(build_app()) as c:
        wait_ready(c)
        yield c


def _known_user(env) -> int:
    return int(data.load(env.workdir).events["user_id"].value_counts().index[0])


def _recall(client, user_ids) -> float:
    """Mean live recall@100 over the probes the requests below trigger (one in RECALL_SAMPLE)."""
    console = client.app.state.console
    console.series.reset()
    for uid in user_ids:
        client.post("/recommend", json={"user_id": int(uid), "k": 10}, headers={TRAFFIC_HEADER: "1"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = [v for v in console.series.series(60)["gauges"].get("recall_at_100", []) if v is not None]
        if got and probe_idle(client):
            return float(np.mean(got))
        time.sleep(0.1)
    raise AssertionError("no recall probe finished")


def probe_idle(client) -> bool:
    return client.app.state.recall_probe.jobs.unfinished_tasks == 0


def test_nprobe_moves_live_recall_and_exact_search_is_perfect(client, console_env) -> None:
    users = np.arange(0, 400, 5)
    chosen = client.get("/stats/series").json()["knobs"]["nprobe"]
    assert chosen == client.get("/console/meta").json()["knobs"]["defaults"]["nprobe"] > 1
    high = _recall(client, users)
    client.post("/admin/knobs", json={"nprobe": 1}, headers=AUTH).raise_for_status()
    low = _recall(client, users)
    client.post("/admin/knobs", json={"index": "exact"}, headers=AUTH).raise_for_status()
    exact = _recall(client, users)
    assert low < high - 0.2 and exact == 1.0, (low, high, exact)


def test_ranker_off_and_creator_cap_change_the_feed(client, console_env) -> None:
    uid = _known_user(console_env)
    ranked = client.post("/recommend", json={"user_id": uid, "k": 20}).json()["items"]
    client.post("/admin/knobs", json={"ranker": False, "creator_cap": 1}, headers=AUTH).raise_for_status()
    plain = client.post("/recommend", json={"user_id": uid, "k": 20}).json()["items"]
    assert [it["video_id"] for it in plain] != [it["video_id"] for it in ranked]
    res = client.app.state.resources.get()
    assert np.bincount(res.catalog.creator[[it["video_id"] for it in plain]]).max() == 1
    client.post("/admin/reset", headers=AUTH).raise_for_status()
    again = client.post("/recommend", json={"user_id": uid, "k": 20}).json()["items"]
    assert [it["video_id"] for it in again] == [it["video_id"] for it in ranked]


def test_store_down_turns_answers_degraded_and_reset_brings_them_back(client, console_env) -> None:
    uid = _known_user(console_env)
    client.post("/admin/faults", json={"online_store_down": True}, headers=AUTH).raise_for_status()
    assert all(client.post("/recommend", json={"user_id": uid}).json()["degraded"] for _ in range(4))
    assert client.get("/readyz").json()["dependencies"]["online_store"]["state"] == "open"
    client.post("/admin/reset", headers=AUTH).raise_for_status()
    deadline = time.monotonic() + 15  # the breaker's cooldown (5 s), then one probe read closes it
    while client.post("/recommend", json={"user_id": uid}).json()["degraded"]:
        assert time.monotonic() < deadline
        time.sleep(0.5)


@pytest.mark.parametrize("patch", [{"nprobe": 100000}, {"nprobe": 0}, {"candidates": 5}, {"index": "lsh"}])
def test_a_bad_knob_is_a_422_and_changes_nothing(client, patch) -> None:
    r = client.post("/admin/knobs", json=patch, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    assert (
        client.get("/stats/series").json()["knobs"] == client.get("/console/meta").json()["knobs"]["defaults"]
    )


@pytest.fixture
def page(console_env, tmp_path: Path, chromium: str):
    with served_on_loopback(build_app()) as url, open_page(chromium, f"{url}/", tmp_path / "profile") as p:
        p.wait_for("!!window.mlsd && !!mlsd.series && !!document.getElementById('set-nprobe')")
        yield p


def test_the_console_in_chromium(page, console_env) -> None:
    page.type_into("#token", TOKEN)
    page.click("#token-button")
    page.wait_for("document.getElementById('token-state').textContent === 'unlocked'")
    drawn = page.js("mlsd.drawn.latency")
    page.type_into("#traffic-rate", "40")
    page.click("#traffic-start")
    page.wait_for(f"mlsd.drawn.latency > {drawn} + 10", timeout_s=30)
    recall = "(mlsd.series.gauges.recall_at_100 || []).filter(v => v !== null)"
    page.wait_for(f"{recall}.length >= 2", timeout_s=30)
    before = page.js(f"{recall}.slice(-1)[0]")
    # nprobe down to 1: live recall@100 falls on the chart within seconds
    page.type_into("#set-nprobe", "1")
    page.js("document.getElementById('set-nprobe').blur()")
    page.wait_for("mlsd.state.knobs.nprobe === 1", timeout_s=10)
    page.wait_for(f"{recall}.slice(-1)[0] < {before} - 0.2", timeout_s=30)
    # online store down: the form's answer says degraded
    page.click("#set-online_store_down")
    page.wait_for("mlsd.state.faults.online_store_down === true", timeout_s=10)
    page.type_into("#recsys-user", str(_known_user(console_env)))
    page.click("#recsys-send")
    page.wait_for("document.getElementById('recsys-flags').textContent.includes('DEGRADED')")
    page.wait_for(
        "(mlsd.series.gauges.degraded || []).filter(v => v !== null).slice(-1)[0] > 0.5", timeout_s=20
    )
    page.click("#reset-button")
    page.wait_for("mlsd.state.knobs.nprobe > 1 && !mlsd.state.faults.online_store_down", timeout_s=10)
    page.wait_for(f"{recall}.slice(-1)[0] >= {before} - 0.05", timeout_s=30)
    page.click("#traffic-stop")
    page.wait_for("!mlsd.series.traffic.running", timeout_s=10)
    assert page.errors == []
