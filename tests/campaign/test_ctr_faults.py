"""ctr faults: a full disk under the serving log, a hung disk at shutdown, a slow or dead online store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from infra.serving.testing import wait_ready
from systems.ctr.serve import INT64_MAX, PredictRequest, ServingLog
from tests.campaign.fuzz import session_env

FULL_DISK = Path("/dev/full")  # every write fails with ENOSPC, as a full disk does; no tmpfs or root needed


def entry(i: int) -> dict:
    return {"request_id": f"r{i}", "scores": [0.1], "features": {}, "model_version": "m"}


@pytest.mark.skipif(not FULL_DISK.exists(), reason="/dev/full is missing on this machine")
def test_a_full_disk_drops_lines_counts_them_and_the_writer_lives() -> None:
    log = ServingLog(FULL_DISK)
    for i in range(50):
        log.append(entry(i))
    deadline = time.monotonic() + 5
    while log.snapshot()["dropped"] < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    snap = log.snapshot()
    assert snap["dropped_write_error"] == 50 and snap["written"] == 0
    assert snap["writer_alive"] and "No space left" in snap["last_error"]
    t0 = time.monotonic()
    log.close()
    assert time.monotonic() - t0 < 2


def test_every_line_is_written_or_counted(tmp_path: Path) -> None:
    log = ServingLog(tmp_path / "log.jsonl", maxsize=10)
    for i in range(200):  # far more than the queue holds: the rest are dropped, and counted
        log.append(entry(i))
    log.close()
    snap = log.snapshot()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert snap["written"] == len(lines)
    assert snap["written"] + snap["dropped"] == 200


def test_shutdown_returns_in_bounded_time_on_a_hung_disk(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    hung = threading.Event()

    class HungFile:
        def write(self, _text: str) -> None:
            hung.wait(30)  # a disk that never answers

        def flush(self) -> None: ...

        def close(self) -> None: ...

    log = ServingLog(tmp_path / "log.jsonl", maxsize=5, close_timeout_s=0.5)
    monkeypatch.setattr(Path, "open", lambda *_a, **_k: HungFile())
    for i in range(20):
        log.append(entry(i))
    t0 = time.monotonic()
    log.close()
    took = time.monotonic() - t0
    hung.set()
    assert took < 1.5, f"close took {took:.1f} s"
    assert log.snapshot()["dropped"] > 0


@pytest.mark.parametrize("field", ["user_id", "candidates"])
def test_ints_past_int64_are_a_422_at_the_schema(field: str) -> None:
    body = {"request_id": "r", "user_id": 1, "site_id": 1, "device": 0, "candidates": [1]}
    body[field] = INT64_MAX + 1 if field == "user_id" else [INT64_MAX + 1]
    with pytest.raises(ValueError, match="less than or equal"):
        PredictRequest.model_validate(body)


def test_a_timestamp_without_a_utc_form_is_refused() -> None:
    with pytest.raises(ValueError, match="UTC"):
        PredictRequest.model_validate({"request_id": "r", "user_id": 1, "site_id": 1, "device": 0,
                                       "candidates": [1], "timestamp": "0001-01-01T00:00:00+01:00"})  # fmt: skip


@pytest.mark.slow
def test_a_slow_online_store_gives_the_flagged_population_default_never_a_503(ctr_world) -> None:  # noqa: ANN001
    from systems.ctr.config import CtrSettings  # imported here: the world fixture builds first
    from systems.ctr.data import load_market
    from systems.ctr.serve import build_app

    data_dir, art = ctr_world
    with session_env(data_dir, MLSD_ONLINE_STORE=None, MLFLOW_TRACKING_URI=None):
        market = load_market(art)
        ads = market.ads["ad_id"].tolist()[:5]
        with TestClient(build_app(CtrSettings(), art)) as client:
            wait_ready(client)
            body = {"request_id": "r1", "user_id": 1, "site_id": 1, "device": 0, "candidates": ads}
            healthy = client.post("/predict", json=body)
            assert healthy.status_code == 200 and healthy.json()["degraded"] is None
            res = client.app.state.resources.resources
            res.user_features = lambda _uid: time.sleep(2) or {}  # a store that answers after the deadline
            t0 = time.monotonic()
            slow = client.post("/predict", json=body)
            assert time.monotonic() - t0 < 1.5
            assert slow.status_code == 200 and "timeout" in slow.json()["degraded"]

            def dead(_uid: int) -> dict:
                raise ConnectionError("redis at 127.0.0.1:6379 refused the connection")

            res.user_features = dead
            for _ in range(6):  # past the breaker's threshold: then answered at once, circuit open
                r = client.post("/predict", json=body)
                assert r.status_code == 200 and r.json()["degraded"]
            assert "circuit open" in r.json()["degraded"]
            assert client.get("/readyz").json()["dependencies"]["feast_online"]["state"] == "open"
            stats = client.get("/stats").json()
            assert stats["serving_log"]["writer_alive"]
