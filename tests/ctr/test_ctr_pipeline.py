"""End to end on a tiny market: data -> Feast -> train -> registry -> /predict -> serving log; and the CLI."""

import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from infra.artifacts import Artifacts
from systems.ctr import pipeline
from systems.ctr.config import MonitorConfig, SkewConfig
from systems.ctr.data import load_log, load_market, load_rows
from systems.ctr.serve import build_app, read_serving_log


def test_train_serve_and_log_what_was_served(tiny_trained: Artifacts) -> None:
    art = tiny_trained
    assert len(load_log(art)) == 15_000
    results = json.loads(art.path("train_metrics.json").read_text())
    assert results["deepfm"]["alias"] == "challenger" and results["lr"]["alias"] == "champion"
    assert 0.6 < results["deepfm"]["auc"] <= results["bayes"]["auc"] + 0.02
    rows = load_rows(art).tail(30)
    with TestClient(build_app()) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.1)
        for r in rows.itertuples():
            body = {"request_id": r.request_id, "user_id": int(r.user_id), "site_id": int(r.site_id),
                    "device": int(r.device), "timestamp": r.event_timestamp.isoformat(),
                    "candidates": [int(r.ad_id), *(a for a in range(10) if a != r.ad_id)]}  # fmt: skip
            resp = client.post("/predict", json=body)
            assert resp.status_code == 200, resp.text
            scores = [a["p_click"] for a in resp.json()["ads"]]
            assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
            assert "model;dur=" in resp.headers["server-timing"]
        bad = client.post("/predict", json={**body, "candidates": [10_000]})
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "candidates.0"
        missing = client.post("/predict", json={k: v for k, v in body.items() if k != "user_id"})
        assert missing.status_code == 422 and missing.json()["fields"][0]["field"] == "user_id"
    served = read_serving_log(next((art.root / "serving_log").glob("*.jsonl")))
    joined = rows.merge(served, on=["request_id", "ad_id"], suffixes=("_train", "_serve"))
    assert len(joined) == len(rows)
    for c in ("user_segment", "advertiser_id", "ad_category", "promoted", "site_id", "device", "hour"):
        assert np.array_equal(
            joined[f"{c}_train"].to_numpy(np.int64), joined[f"{c}_serve"].to_numpy(np.int64)
        ), c
    np.testing.assert_allclose(joined["ad_quality_train"], joined["ad_quality_serve"], rtol=1e-6)
    assert (joined["position_serve"] == 1).all()  # scored at the top slot, whatever slot the log shows


def test_the_skew_and_monitor_tools_run_on_the_trained_artifacts(tiny_trained: Artifacts, tmp_path) -> None:
    art = tiny_trained
    pipeline.skew(SkewConfig(rows=200), art)
    report = json.loads(art.path("skew.json").read_text())
    clean = [r for r in report if r["case"] == "clean"]
    assert clean and all(r["mismatch_rate"] == 0 for r in clean)
    pipeline.monitor(MonitorConfig(rows=1000, out=tmp_path / "monitoring"), art)
    shifts = json.loads((tmp_path / "monitoring" / "shifts.json").read_text())
    assert [r["shift"] for r in shifts][0] == "none"


@pytest.mark.parametrize(
    "argv",
    [["nope"], ["train", "--epochs", "0"], ["experiment", "--scenario", "nope"], ["bench", "--duration", "0"],
     ["skew", "--rows", "5"], ["eval", "--seeds", "x"]],
)  # fmt: skip
def test_bad_cli_input_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture, mlsd_ctr
) -> None:
    try:
        code = mlsd_ctr(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    assert len((captured.err or captured.out).strip().splitlines()) == 1


def test_a_step_before_data_says_what_to_run() -> None:
    art = Artifacts("ctr", "small")
    with pytest.raises(FileNotFoundError, match="mlsd ctr data"):
        load_rows(art)
    with pytest.raises(FileNotFoundError, match="mlsd ctr data"):
        load_market(art)
