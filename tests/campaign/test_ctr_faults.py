"""ctr faults: a full disk under the serving log, a hung disk at shutdown, a slow or dead online store, a corrupt
model file or an unreachable registry at start-up."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from infra.serving.testing import wait_ready
from systems.ctr.serve import INT64_MAX, PredictRequest, ServingLog
from tests.campaign.fuzz import session_env, settled_readyz

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


# ---------------------------------------------------------------------------------------------- corrupt artifacts
CORRUPTIONS = {  # what a bad disk, a partial upload or a wrong file leaves behind, by file of the served model
    "model.onnx truncated": ("model.onnx", lambda b: b[: len(b) // 3]),
    "model.onnx not a model": ("model.onnx", lambda b: b"\x00not an onnx graph" * 64),
    "model.onnx empty": ("model.onnx", lambda b: b""),
    "config.json truncated": ("config.json", lambda b: b[: len(b) // 2]),
}


@contextlib.contextmanager
def corrupted(path: Path, damage: Callable[[bytes], bytes]) -> Iterator[None]:
    """`path` damaged for the block, then restored: the session's world stays whole for the tests after."""
    original = path.read_bytes()
    path.write_bytes(damage(original))
    try:
        yield
    finally:
        path.write_bytes(original)


def registry_folder(alias: str = "champion") -> Path:
    """The folder the registry holds the served model's files in (what the server downloads at start-up)."""
    from infra.registry import Registry  # imported here: the world fixture builds first
    from systems.ctr.train import MODEL_NAME

    registry = Registry()
    ref = registry.get(MODEL_NAME, alias)
    root = registry.client.get_run(ref.run_id).info.artifact_uri
    return Path(urlparse(root).path) / ref.artifact_path


def assert_down_but_alive(client: TestClient, ads: list[int], reason: str) -> str:
    """/healthz 200, /readyz 503 naming `reason`, /predict 503 in the one error shape; no 500, no traceback."""
    ready = settled_readyz(client)
    assert ready.status_code == 503, ready.text
    message = ready.json()["message"]
    assert ready.json()["error"] == "not_ready" and reason in message, message
    assert client.get("/healthz").status_code == 200  # alive, not crash-looping
    body = {"request_id": "r1", "user_id": 1, "site_id": 1, "device": 0, "candidates": ads}
    for _ in range(3):
        p = client.post("/predict", json=body)
        assert p.status_code == 503 and set(p.json()) == {"error", "message", "fields"}, p.text
        assert p.json()["message"] == message and "Traceback" not in p.text
    assert client.get("/stats").status_code == 200  # the ops routes answer while not ready
    return message


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_corrupt_model_at_startup_is_a_503_with_the_reason(ctr_world, case: str) -> None:  # noqa: ANN001
    from systems.ctr.config import CtrSettings  # imported here: the world fixture builds first
    from systems.ctr.data import load_market
    from systems.ctr.serve import build_app

    data_dir, art = ctr_world
    name, damage = CORRUPTIONS[case]
    with session_env(data_dir, MLSD_ONLINE_STORE=None, MLFLOW_TRACKING_URI=None):
        ads = load_market(art).ads["ad_id"].tolist()[:5]
        with corrupted(registry_folder() / name, damage), TestClient(build_app(CtrSettings(), art)) as client:
            message = assert_down_but_alive(client, ads, name)
            assert "mlsd ctr train" in message  # says what to do
        with TestClient(build_app(CtrSettings(), art)) as client:  # the file restored: the next start serves
            wait_ready(client)
            body = {"request_id": "r2", "user_id": 1, "site_id": 1, "device": 0, "candidates": ads}
            assert client.post("/predict", json=body).status_code == 200


@pytest.mark.slow
def test_an_unreachable_registry_at_startup_is_a_503_without_its_password(ctr_world) -> None:  # noqa: ANN001
    from systems.ctr.config import CtrSettings  # imported here: the world fixture builds first
    from systems.ctr.serve import build_app

    data_dir, art = ctr_world
    secret = "s3cret-pw"
    uri = f"postgresql://mlsd:{secret}@127.0.0.1:9/mlflow"  # port 9 (discard): refused at once
    env = session_env(data_dir, MLSD_ONLINE_STORE=None, MLFLOW_TRACKING_URI=uri)
    with env, TestClient(build_app(CtrSettings(), art)) as client:
        message = assert_down_but_alive(client, [0], "127.0.0.1:9")
        assert secret not in message and "mlsd:***@127.0.0.1:9" in message
        assert secret not in client.get("/readyz").text
