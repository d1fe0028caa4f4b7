"""A corrupt model or index file at startup, for the recsys and fraud servers: the process stays up (/healthz),
/readyz (or the degraded answer DESIGN.md promises) says why, and no request gets a 5xx: never a crash loop."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from infra.artifacts import Artifacts
from tests.campaign.fuzz import session_env, settled_readyz

pytestmark = pytest.mark.slow


def test_recsys_with_a_corrupt_index_is_not_ready_with_the_reason(recsys_world: Path, tmp_path: Path) -> None:
    from systems.recsys_two_tower.serve import build_app  # imported here: the world fixture builds first

    copy = tmp_path / "data"
    shutil.copytree(recsys_world, copy)
    with session_env(copy, MLSD_ONLINE_STORE=None, MLFLOW_TRACKING_URI=None):
        index = Artifacts("recsys", "small").path("index/serving.faiss")
        index.write_bytes(index.read_bytes()[:100])  # a truncated copy
        with TestClient(build_app("small")) as client:
            r = settled_readyz(client)
            assert r.status_code == 503 and r.json()["message"] != "loading models and indexes"
            assert client.get("/healthz").status_code == 200
            rec = client.post("/recommend", json={"user_id": 1, "k": 10})
            assert rec.status_code == 503 and set(rec.json()) == {"error", "message", "fields"}


def test_fraud_with_a_corrupt_live_bundle_stays_up_and_never_5xx(fraud_world, tmp_path: Path) -> None:  # noqa: ANN001
    from systems.fraud_edge.serve import build_app  # imported here: the world fixture builds first

    data_dir, _ = fraud_world
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    with session_env(copy):
        art = Artifacts("fraud", "small")
        bundles = art.root / "bundles"
        live = bundles / (bundles / "LIVE").read_text().strip()
        (live / "model.onnx").write_bytes(b"corrupt")
        with TestClient(build_app(art, store="memory")) as client:
            r = settled_readyz(client)
            assert client.get("/healthz").status_code == 200
            if r.status_code == 503:  # not ready: the reason names the bundle
                assert r.json()["message"]
            tx = {
                "tx_id": "t1",
                "card_id": "c1",
                "terminal_id": "t1",
                "amount": 12.5,
                "lat": 48.8,
                "lon": 2.3,
            }
            s = client.post("/score", json=tx)
            assert s.status_code < 500 or (s.status_code == 503 and r.status_code == 503), s.text
