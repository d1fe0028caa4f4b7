"""POST /score: decisions with per-stage ms, 422 on bad input, replays flagged; the CLI's one-line errors."""

from __future__ import annotations

import json
import logging
import time

import pytest
from fastapi.testclient import TestClient

from infra.config import get_settings
from infra.serving.testing import logged, wait_ready
from systems.fraud_edge.bundle import set_live, write_bundle
from systems.fraud_edge.features.velocity import Transaction
from systems.fraud_edge.scorer import EdgeScorer
from systems.fraud_edge.serve import build_app

NOW = int(time.time())  # /score admits event times near the server clock only (MLSD_FRAUD_MAX_LATENESS_S)
TX = {
    "tx_id": "s1", "card_id": "c000001", "terminal_id": "t00001", "amount": 25.0,
    "currency": "EUR", "lat": 48.86, "lon": 2.35, "ts": NOW - 600,
}  # fmt: skip


@pytest.fixture
def client(served_dir, monkeypatch):
    monkeypatch.setenv("MLSD_FRAUD_STORE", "memory")
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", "test-admin-token")  # /bundle/reload is an admin route
    get_settings.cache_clear()
    with TestClient(build_app()) as c:
        wait_ready(c)
        c.headers["Authorization"] = "Bearer test-admin-token"
        yield c


def test_score_returns_a_decision_with_stages(client) -> None:
    r = client.post("/score", json=TX)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["action"] in ("approve", "review", "decline") and body["mode"] == "model+rules"
    assert set(body["stages_ms"]) == {"features", "model", "decision"}
    assert "features;dur=" in r.headers["server-timing"]
    again = client.post("/score", json=TX).json()
    assert again["replayed"] and again["score"] == body["score"]


def test_card_testing_burst_is_declined(client) -> None:
    for i in range(6):
        tx = {**TX, "tx_id": f"ct{i}", "card_id": "c999999", "amount": 1.0, "ts": NOW - 3000 + 30 * i}
        last = client.post("/score", json=tx).json()
    assert last["action"] == "decline" and "card_testing" in last["rules"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"amount": -5.0}, "amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"card_id": None}, "card_id"),
        ({"lat": 123.0}, "lat"),
    ],
)
def test_bad_input_is_422_naming_the_field(client, change, field) -> None:
    tx = {k: v for k, v in {**TX, **change}.items() if v is not None}
    r = client.post("/score", json=tx)
    assert r.status_code == 422
    assert r.json()["error"] == "validation_error" and field in [f["field"] for f in r.json()["fields"]]


def test_reload_rejects_unknown_version_and_keeps_serving(client) -> None:
    r = client.post("/bundle/reload", json={"version": "v0099"})
    assert r.status_code == 409 and "still serving v0001" in r.json()["message"]


def test_publish_tampered_then_rollback(client, served_dir) -> None:
    """v0002 is good, v0003 is tampered: reload to v0002, refuse v0003, roll back to v0001 via LIVE."""
    v1 = served_dir / "bundles" / "v0001"
    manifest = json.loads((v1 / "manifest.json").read_text())
    args = (
        (v1 / "model.onnx").read_bytes(),
        json.loads((v1 / "feature_spec.json").read_text()),
        json.loads((v1 / "thresholds.json").read_text()),
        manifest["canary"],
        manifest["meta"],
    )
    write_bundle(served_dir / "bundles", *args)  # v0002, now LIVE
    assert client.post("/bundle/reload", json={}).json() == {"serving": "v0002"}
    v3 = write_bundle(served_dir / "bundles", *args, make_live=False)
    (v3 / "model.onnx").write_bytes(b"not an onnx model")
    r = client.post("/bundle/reload", json={"version": "v0003"})
    assert (
        r.status_code == 409
        and "checksum" in r.json()["message"]
        and "still serving v0002" in r.json()["message"]
    )
    assert client.post("/score", json={**TX, "tx_id": "after-reject"}).json()["bundle_version"] == "v0002"
    set_live(served_dir / "bundles", "v0001")  # rollback
    assert client.post("/bundle/reload", json={}).json() == {"serving": "v0001"}


def test_redis_down_falls_back_to_local_features(pipeline) -> None:
    class DownStore:
        def update_and_read(self, tx):
            raise ConnectionError("redis went away")

    art, _ = pipeline
    scorer = EdgeScorer(DownStore())
    scorer.load_live(art.root / "bundles")
    d = scorer.score(Transaction("d1", 1000, "c1", "t1", 2500, 0, 0))
    assert d.degraded.startswith("local_features") and d.mode == "model+rules" and d.score is not None


def test_model_failure_falls_back_to_rules(pipeline) -> None:
    art, _ = pipeline
    scorer = EdgeScorer()
    scorer.load_live(art.root / "bundles")

    def broken(_x):
        raise RuntimeError("onnxruntime crashed")

    scorer.live.predict = broken
    d = scorer.score(Transaction("m1", 1000, "c1", "t1", 300_000, 0, 0))
    assert d.mode == "rules_only" and d.score is None and d.action == "review"


@pytest.mark.parametrize(
    "argv", [["nope"], ["data", "--scale", "huge"], ["train", "--epochs", "0"], ["bench", "--rate", "-1"]]
)
def test_cli_bad_args_exit_2_with_one_line(argv, capsys, fraud_cli) -> None:
    assert fraud_cli(*argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_malformed_json_is_422_not_500(client) -> None:
    r = client.post("/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body"


def test_edge_scorer_cli_scores_without_a_server(served_dir, capsys, fraud_cli) -> None:
    assert fraud_cli("score", "--card", "c42", "--amount", "2500", "--tx-id", "cli1") == 0
    out = capsys.readouterr().out
    assert "model+rules" in out and "large_amount" in out and "v0001" in out


def test_bench_with_redis_down_says_what_to_run(served_dir, monkeypatch, capsys, fraud_cli) -> None:
    """One line on stderr, exit 1. (The runner makes the bench's missing inputs first, so the tiny artifacts
    are copied in: otherwise this test would build the small scale before it reached Redis.)"""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    get_settings.cache_clear()
    assert fraud_cli("bench", "--duration", "1") == 1
    out = capsys.readouterr().err
    assert "redis-server" in out and "--store memory" in out


@pytest.mark.parametrize(
    "store, start", [("redis", "redis-server"), ("redis_cluster", "mlsd redis-cluster start")]
)
def test_a_velocity_store_down_at_start_serves_degraded_saying_why(
    served_dir, monkeypatch, store, start
) -> None:
    """Redis not answering at start (nothing listens on 6390): one warning line naming the command, /readyz ready
    with the reason, and /score answering from the process's own state."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("MLSD_REDIS_CLUSTER_URL", "redis://127.0.0.1:6390")
    monkeypatch.setenv("MLSD_FRAUD_STORE", store)
    get_settings.cache_clear()
    with logged("mlsd") as records, TestClient(build_app()) as c:
        wait_ready(c)
        ready = c.get("/readyz").json()
        scored = c.post("/score", json=TX)
    assert start in ready["degraded"] and "127.0.0.1:6390" in ready["degraded"]
    assert scored.status_code == 200, scored.text
    warnings = [r.getMessage() for r in records if r.name == "mlsd.fraud" and r.levelname == "WARNING"]
    assert len([w for w in warnings if "serving degraded" in w]) == 1, warnings
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
