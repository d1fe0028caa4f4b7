"""POST /score: decisions with per-stage ms, 422 on bad input, replays flagged; the CLI's one-line errors."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from systems.fraud_edge.cli import main as cli_main

TX = {
    "tx_id": "s1", "card_id": "c000001", "terminal_id": "t00001", "amount": 25.0,
    "currency": "EUR", "lat": 48.86, "lon": 2.35, "ts": 1_000_000,
}  # fmt: skip


@pytest.fixture
def client(pipeline, monkeypatch):
    from infra.config import get_settings

    out, _ = pipeline
    monkeypatch.setenv("MLSD_DATA_DIR", str(out.parent))
    monkeypatch.setenv("MLSD_FRAUD_STORE", "memory")
    get_settings.cache_clear()
    # The fixture's artifacts live in <tmp>/fraudN; serve reads <data dir>/fraud, so link it.
    link = out.parent / "fraud"
    if not link.exists():
        link.symlink_to(out, target_is_directory=True)
    from systems.fraud_edge.serve import build_app

    with TestClient(build_app()) as c:
        for _ in range(200):
            if c.get("/readyz").status_code == 200:
                break
            import time

            time.sleep(0.05)
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
        tx = {**TX, "tx_id": f"ct{i}", "card_id": "c999999", "amount": 1.0, "ts": 2_000_000 + 30 * i}
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


@pytest.mark.parametrize(
    "argv", [["nope"], ["data", "--scale", "huge"], ["train", "--epochs", "0"], ["bench", "--rate", "-1"]]
)
def test_cli_bad_args_exit_2_with_one_line(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(argv)
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
