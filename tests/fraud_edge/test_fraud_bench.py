"""The bench step end to end on the tiny pipeline: server up, locust on /score, a report that passes."""

from __future__ import annotations

import json

import pytest

from infra.artifacts import Artifacts
from systems.fraud_edge.evaluate import evaluate


@pytest.mark.slow
def test_bench_runs_end_to_end(served_dir, tmp_path, fraud_cli) -> None:
    evaluate(Artifacts("fraud", "small"))  # the runner would do it; done here so the test controls the data
    report_dir = tmp_path / "report"
    code = fraud_cli(
        "bench", "--duration", "8", "--rate", "40", "--store", "memory", "--out", str(report_dir)
    )
    report = json.loads((report_dir / "report.json").read_text())
    score = report["routes"]["score"]
    assert score["requests"] > 100 and score["failures"] == 0
    assert set(report["stages"]["/score"]) >= {"features", "model", "decision", "total"}
    assert code == report["exit_code"] and report["exit_code"] in (0, 1, 3)
    assert "Model micro-benchmark" in (report_dir / "report.md").read_text()
