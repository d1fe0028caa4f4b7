"""The console machinery on a toy app: admin routes closed without the token, a bad knob a 422 in the one error
shape that changes nothing, reset, the per-step series, and the traffic generator's bounds over real loopback."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import Depends
from fastapi.testclient import TestClient
from pydantic import Field

from infra.config import get_settings
from infra.serving import create_app, require_ready, stage
from infra.serving.console import MAX_RATE, Console, Settings, TrafficRequest, add_console
from infra.serving.testing import wait_ready

TOKEN = "console-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ADMIN_ROUTES = [
    "/admin/knobs",
    "/admin/faults",
    "/admin/reset",
    "/admin/traffic/start",
    "/admin/traffic/stop",
]


class ToyKnobs(Settings):
    size: int = Field(10, ge=1, le=100)
    mode: str = "fast"


class ToyFaults(Settings):
    store_down: bool = False


class Toy:
    """The toy server's resources: what apply() writes and /work reads."""

    def __init__(self) -> None:
        self.size, self.down = 10, False


def toy_app() -> tuple[Any, Console]:
    toy = Toy()
    app = create_app("toy", load=lambda: toy, load_in_background=False)

    def apply(knobs: ToyKnobs, faults: ToyFaults) -> None:
        if knobs.mode not in ("fast", "slow"):
            raise ValueError(f"mode must be fast or slow, got {knobs.mode!r}")
        toy.size, toy.down = knobs.size, faults.store_down

    console = Console(
        system="toy", title="toy", knobs=ToyKnobs(), faults=ToyFaults(),
        traffic=lambda rng: TrafficRequest("/work", {"n": int(rng.integers(10))}),
        request=TrafficRequest("/work", {"n": 1}), apply=apply, gauges=("size",),
    )  # fmt: skip
    add_console(app, console)

    @app.post("/work")
    def work(body: dict, res: Annotated[Toy, Depends(require_ready)]) -> dict:
        with stage("think"):
            time.sleep(0.001)
        console.series.gauge("size", res.size)
        return {"size": res.size, "degraded": res.down}

    return app, console


@pytest.fixture
def with_token(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", TOKEN)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def client(with_token):
    app, _ = toy_app()
    with TestClient(app) as c:
        wait_ready(c)
        yield c


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_admin_routes_are_closed_without_the_token(client, route: str) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}):
        r = client.post(route, json={}, headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", r.text
    assert client.get("/stats/series").json()["knobs"] == {"size": 10, "mode": "fast"}


def test_admin_routes_answer_403_while_no_token_is_set(monkeypatch) -> None:
    monkeypatch.delenv("MLSD_ADMIN_TOKEN", raising=False)
    get_settings.cache_clear()
    app, _ = toy_app()
    with TestClient(app) as c:
        r = c.post("/admin/knobs", json={"size": 5}, headers=AUTH)
    get_settings.cache_clear()
    assert r.status_code == 403 and r.json()["error"] == "admin_disabled"


@pytest.mark.parametrize(
    "patch, field",
    [({"size": 0}, "size"), ({"size": "big"}, "size"), ({"nope": 1}, "nope"), ({"mode": "warp"}, "knobs")],
)
def test_a_bad_knob_is_a_422_in_the_one_shape_and_changes_nothing(client, patch, field) -> None:
    assert client.post("/admin/knobs", json={"size": 20}, headers=AUTH).status_code == 200
    r = client.post("/admin/knobs", json=patch | {"size": patch.get("size", 30)}, headers=AUTH)
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"error", "message", "fields"} and body["error"] == "validation_error"
    assert field in [f["field"] for f in body["fields"]]
    assert client.get("/stats/series").json()["knobs"]["size"] == 20
    assert client.post("/work", json={}).json()["size"] == 20


def test_knobs_and_faults_apply_and_reset_undoes_them(client) -> None:
    r = client.post("/admin/knobs", json={"size": 42}, headers=AUTH)
    assert r.status_code == 200 and r.json()["knobs"] == {"size": 42, "mode": "fast"}
    assert client.post("/admin/faults", json={"store_down": True}, headers=AUTH).json()["faults"][
        "store_down"
    ]
    assert client.post("/work", json={}).json() == {"size": 42, "degraded": True}
    r = client.post("/admin/reset", headers=AUTH)
    assert r.json()["knobs"] == {"size": 10, "mode": "fast"} and r.json()["faults"] == {"store_down": False}
    assert client.post("/work", json={}).json() == {"size": 10, "degraded": False}


def test_series_has_each_stage_and_gauge_but_not_the_console_own_calls(client) -> None:
    for _ in range(5):
        client.post("/work", json={})
    client.get("/stats/series")
    s = client.get("/stats/series", params={"window_s": 60}).json()
    assert len(s["t"]) == 30 and s["step_s"] == 2
    work = s["latency"]["/work"]
    assert set(work) == {"think", "total"}
    p50 = [v for v in work["think"]["p50"] if v is not None]
    assert p50 and p50[-1] >= 1.0  # the stage sleeps 1 ms
    assert [v for v in s["gauges"]["size"] if v is not None] == [10.0]
    assert set(s["latency"]) == {"/work"}  # /stats/series, /admin/*, / are not timed into the charts
    assert client.get("/stats/series", params={"window_s": 5}).status_code == 422


def test_the_page_and_its_assets_are_served(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/console/assets/console.js" in page.text
    assert client.get("/console/assets/console.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/console/assets/../app.py").status_code == 404
    meta = client.get("/console/meta").json()
    assert (
        meta["knobs"]["defaults"] == {"size": 10, "mode": "fast"}
        and meta["interview"] == "systems/toy/INTERVIEW.md"
    )
    r = client.get("/console/interview")
    assert r.status_code == 404 and "INTERVIEW.md" in r.json()["message"]


def test_traffic_is_bounded_and_stops_by_itself(with_token) -> None:
    app, console = toy_app()
    with socket_server(app) as url:
        assert (
            httpx.post(f"{url}/admin/traffic/start", json={"rate": MAX_RATE + 1}, headers=AUTH).status_code
            == 422
        )
        assert (
            httpx.post(f"{url}/admin/traffic/start", json={"duration_s": 601}, headers=AUTH).status_code
            == 422
        )
        r = httpx.post(f"{url}/admin/traffic/start", json={"rate": 40, "duration_s": 1.0}, headers=AUTH)
        assert r.status_code == 200 and r.json()["traffic"]["running"]
        deadline = time.monotonic() + 10
        while console.generator.running and time.monotonic() < deadline:
            time.sleep(0.1)
        status = httpx.get(f"{url}/stats/series").json()["traffic"]
        assert not status["running"]
        assert 30 <= status["sent"] <= 42 and status["errors"] == 0, status
        series = httpx.get(f"{url}/stats/series").json()
        assert sum(series["latency"]["/work"]["total"]["rps"]) * 2 >= 30
        r = httpx.post(f"{url}/admin/traffic/start", json={"rate": 20, "duration_s": 60}, headers=AUTH)
        assert httpx.post(f"{url}/admin/traffic/stop", headers=AUTH).json()["traffic"]["running"] is False


def test_traffic_draws_from_the_system_source_with_its_seed() -> None:
    app, console = toy_app()
    a = [console.traffic(np.random.default_rng(3)).body for _ in range(3)]
    assert a == [console.traffic(np.random.default_rng(3)).body for _ in range(3)]


class socket_server:  # noqa: N801 (a context manager read as a noun)
    """The app under uvicorn on a free loopback port (the traffic generator needs a real socket)."""

    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
