"""Fault injection on a Redis of the test's own (port of its own, AOF on, fsync always): paused under load,
resumed, then killed and restarted. Zero 5xx, /healthz within 1 s throughout, every outage answer flagged and
within the request budget, and no acknowledged transaction missing from the velocity state afterwards.

Never the shared Redis on 6379: SIGSTOP goes only to the redis-server this test started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from infra.config import get_settings
from infra.serving.testing import wait_ready
from systems.fraud_edge.features.store import RedisVelocityStore
from systems.fraud_edge.features.velocity import Transaction
from systems.fraud_edge.serve import build_app

pytestmark = [pytest.mark.redis, pytest.mark.slow]
TOKEN = "fault-admin-token"
N_OUTAGE = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A redis-server on a free port with AOF (appendfsync always) in `root`; stop/start keep its data."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.root), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)  # only the server this test started

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path, redis_server_binary):
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.signal(signal.SIGCONT)
        server.kill()


def _tx(i: int, now: int) -> dict:
    return {
        "tx_id": f"out{i}", "card_id": f"c{i % 5}", "terminal_id": f"t{i % 3}", "amount": 10.0 + i,
        "currency": "EUR", "lat": 48.86, "lon": 2.35, "ts": now - 100 + i,
    }  # fmt: skip


def _transaction(i: int, now: int) -> Transaction:
    """What the server recorded for _tx(i, now)."""
    body = _tx(i, now)
    return Transaction(
        body["tx_id"], body["ts"], body["card_id"], body["terminal_id"], round(body["amount"] * 100),
        48_860_000, 2_350_000,
    )  # fmt: skip


def test_redis_paused_then_killed_loses_no_acknowledged_transaction(
    served_dir, own_redis, monkeypatch
) -> None:
    monkeypatch.setenv("REDIS_URL", own_redis.url)
    monkeypatch.setenv("MLSD_FRAUD_STORE", "redis")
    monkeypatch.setenv("MLSD_FRAUD_NAMESPACE", "fault")
    monkeypatch.setenv("MLSD_FRAUD_REDIS_DEADLINE_MS", "200")  # the shared machine's tail, not Redis's
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", TOKEN)
    get_settings.cache_clear()
    now = int(time.time())
    health_ms: list[float] = []
    statuses: list[int] = []
    stop = threading.Event()

    with TestClient(build_app()) as client:
        wait_ready(client)

        def poll_health() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                statuses.append(client.get("/healthz").status_code)
                health_ms.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.02)

        def score(i: int) -> tuple[int, dict, float]:
            t0 = time.perf_counter()
            r = client.post("/score", json=_tx(i, now))
            return r.status_code, r.json(), time.perf_counter() - t0

        before = [score(i) for i in range(5)]
        assert [code for code, _, _ in before] == [200] * 5, before  # (a slow one may be degraded: journaled)

        poller = threading.Thread(target=poll_health, daemon=True)
        poller.start()
        own_redis.signal(signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(4) as pool:
                during = list(pool.map(score, range(5, 5 + N_OUTAGE)))
        finally:
            own_redis.signal(signal.SIGCONT)
        assert [code for code, _, _ in during] == [200] * N_OUTAGE
        assert all(body["degraded"].startswith("local_features") for _, body, _ in during)
        assert max(s for _, _, s in during) < 1.0  # the request budget, on a loaded machine (deadline 50 ms)

        time.sleep(2.2)  # the breaker's cool-down: the next call is its probe
        for k in range(50):  # answered by Redis again (the breaker's probe passed); starts the reconciliation
            after = client.post(
                "/score", json={**_tx(1000 + k, now), "card_id": "cAfter", "ts": int(time.time())}
            )
            assert after.status_code == 200, after.text
            if after.json()["degraded"] is None:
                break
            time.sleep(0.2)
        assert after.json()["degraded"] is None, after.text
        deadline = time.monotonic() + 15
        store = RedisVelocityStore(own_redis.url, "fault")
        try:
            acked = [_transaction(i, now) for i in range(5 + N_OUTAGE)]
            while time.monotonic() < deadline and not all(store.has(t) for t in acked):
                client.post("/journal/reconcile", headers={"Authorization": f"Bearer {TOKEN}"})
                time.sleep(0.2)
            missing = [t.tx_id for t in acked if not store.has(t)]
            assert missing == [], f"acknowledged but not in Redis after reconciliation: {missing}"
            # reconciling again counts nothing twice
            again = client.post("/journal/reconcile", headers={"Authorization": f"Bearer {TOKEN}"}).json()
            assert again["reconciled"] in (None, {"applied": 0, "already": 0, "conflicts": 0, "pending": 0})
        finally:
            store.close()
        stop.set()
        poller.join(timeout=5)

    assert statuses and set(statuses) == {200}
    assert max(health_ms) < 1000, f"/healthz waited {max(health_ms):.0f} ms"

    # killed and restarted: AOF (fsync always) keeps every acknowledged write
    own_redis.kill()
    own_redis.start()
    store = RedisVelocityStore(own_redis.url, "fault")
    try:
        assert all(store.has(t) for t in acked)
        probe = Transaction("probe", now, "c0", "t0", 100, 48_860_000, 2_350_000)
        raw, _ = store.update_and_read(probe)
        n_c0 = sum(1 for i in range(5 + N_OUTAGE) if i % 5 == 0) + 1  # c0's acknowledged txs, and the probe
        assert raw["card_cnt_24h"] == n_c0
    finally:
        store.close()
