import json
import logging
import time
from dataclasses import dataclass
from typing import Annotated

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from infra.config import ServiceUnavailable, get_settings
from infra.serving import create_app, require_ready, stage
from infra.serving.testing import logged


@dataclass
class ToyResources:
    multiplier: int


class Ask(BaseModel):
    k: int = Field(..., ge=1, le=500)
    user_id: str


def make_app(load=None, **kw):
    app = create_app("toy", load=load, **kw)

    from fastapi import Depends

    @app.post("/work")
    def work(req: Ask, res: Annotated[ToyResources, Depends(require_ready)]) -> dict:
        with stage("features"):
            time.sleep(0.002)
        with stage("model"):
            out = res.multiplier * req.k
        return {"out": out}

    @app.get("/boom")
    def boom() -> dict:
        raise ValueError("kaboom")

    return app


def _load() -> ToyResources:
    return ToyResources(multiplier=3)


def test_ready_only_after_load() -> None:
    gate = {"go": False}

    def slow_load() -> ToyResources:
        while not gate["go"]:
            time.sleep(0.01)
        return _load()

    with TestClient(make_app(slow_load)) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["error"] == "not_ready"
        assert client.post("/work", json={"k": 2, "user_id": "u"}).status_code == 503
        gate["go"] = True
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.01)
        assert client.get("/readyz").status_code == 200
        assert client.post("/work", json={"k": 2, "user_id": "u"}).json() == {"out": 6}


def test_failed_load_is_reported_on_readyz() -> None:
    def bad() -> ToyResources:
        raise FileNotFoundError("index.faiss missing; run `mlsd recsys index`")

    with TestClient(make_app(bad, load_in_background=False)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and "index.faiss missing" in r.json()["message"]


def test_a_store_down_at_start_is_one_line_and_its_reason_on_readyz() -> None:
    """The message says what to run; the traceback is only for MLSD_LOG_LEVEL=DEBUG."""

    def down() -> ToyResources:
        raise ServiceUnavailable(
            "Redis at redis://127.0.0.1:6390/0 did not answer; start it with `redis-server`"
        )

    with logged("mlsd.serving") as records, TestClient(make_app(down, load_in_background=False)) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    assert (
        r.json()["message"]
        == "Redis at redis://127.0.0.1:6390/0 did not answer; start it with `redis-server`"
    )
    errors = [rec for rec in records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and "start it with `redis-server`" in errors[0].getMessage()
    assert not [
        rec
        for rec in records
        if rec.levelno >= logging.INFO and (rec.exc_info or "Traceback" in rec.getMessage())
    ]


def test_degraded_resources_say_why_on_readyz() -> None:
    @dataclass
    class Degraded(ToyResources):
        degraded: str | None = "the store was down at start"

    with TestClient(make_app(lambda: Degraded(multiplier=1), load_in_background=False)) as client:
        r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["degraded"] == "the store was down at start"


def test_validation_error_names_the_field() -> None:
    with TestClient(make_app(_load, load_in_background=False)) as client:
        r = client.post("/work", json={"k": 9999, "user_id": "u"})
        assert r.status_code == 422
        body = r.json()
        assert body["error"] == "validation_error"
        assert body["fields"][0]["field"] == "k" and body["message"].startswith("k:")
        r = client.post("/work", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"] == "validation_error"
        r = client.post("/work", json={"k": 1})
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "user_id"


def test_unhandled_error_is_json_without_traceback() -> None:
    with TestClient(make_app(_load, load_in_background=False), raise_server_exceptions=False) as client:
        r = client.get("/boom")
        assert r.status_code == 500
        assert r.json() == {"error": "internal_error", "message": "ValueError: kaboom", "fields": []}
        assert "Traceback" not in r.text


def test_server_timing_metrics_and_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", "test-token")
    get_settings.cache_clear()
    with TestClient(make_app(_load, load_in_background=False)) as client:
        for _ in range(3):
            r = client.post("/work", json={"k": 2, "user_id": "u"})
        timing = r.headers["server-timing"]
        parts = dict(p.split(";dur=") for p in timing.split(", "))
        assert set(parts) == {"features", "model", "total"}
        assert float(parts["features"]) >= 2.0 and float(parts["total"]) >= float(parts["features"])
        metrics = client.get("/metrics").text
        assert 'mlsd_requests_total{app="toy",method="POST",route="/work",status="200"} 3.0' in metrics
        assert 'mlsd_stage_seconds_count{app="toy",route="/work",stage="features"} 3.0' in metrics
        stats = client.get("/stats").json()
        assert stats["/work"]["features"]["count"] == 3
        assert stats["/work"]["features"]["p50_ms"] >= 2.0
        assert client.post("/stats/reset", headers={"Authorization": "Bearer test-token"}).status_code == 200
        assert client.get("/stats").json() == {}
        assert client.get("/floor").json() == {}


def test_json_access_log(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("mlsd.access")
    logger.addHandler(caplog.handler)
    try:
        with TestClient(make_app(_load, load_in_background=False)) as client:
            client.post("/work", json={"k": 1, "user_id": "u"})
    finally:
        logger.removeHandler(caplog.handler)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mlsd.access"]
    assert lines and lines[-1]["route"] == "/work" and lines[-1]["status"] == 200
    assert set(lines[-1]["stages"]) == {"features", "model"}
