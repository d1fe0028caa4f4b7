"""The bench step end to end on the tiny pipeline: server up, locust on /score, a report that passes."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.mark.slow
def test_bench_runs_end_to_end(pipeline, tmp_path) -> None:
    from infra.config import get_settings
    from systems.fraud_edge.cli import main
    from systems.fraud_edge.evaluate import evaluate

    out, _ = pipeline
    dst = get_settings().system_dir("fraud")
    shutil.copytree(out, dst, dirs_exist_ok=True)
    evaluate(dst)  # bootstrap would do it; done here so the test controls the data
    report_dir = tmp_path / "report"
    code = main(["bench", "--duration", "8", "--rate", "40", "--store", "memory", "--out", str(report_dir)])
    report = json.loads((report_dir / "report.json").read_text())
    score = report["routes"]["score"]
    assert score["requests"] > 100 and score["failures"] == 0
    assert set(report["stages"]["/score"]) >= {"features", "model", "decision", "total"}
    assert code == (0 if report["passed"] else 1)
    assert "Model micro-benchmark" in (report_dir / "report.md").read_text()
