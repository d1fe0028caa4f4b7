"""The golden check: `mlsd fraud all --scale small` gives the numbers the old code gave, step by step, on seed 0.

golden_small.json holds what the old steps wrote (its "about" says how they were run). Every number must agree
within 1e-6 on one CPU kind (within CROSS_CPU on another: conftest.golden_check); strings (the bundle version,
the served variant) exactly.

One thing is held fixed on purpose: `select_variant` excludes a variant whose batch-1 p99 latency misses
MODEL_BUDGET_P99_MS, and a latency depends on how busy the machine is (on a loaded 2-core machine fp32 can
measure 0.21 ms and lose to int8_static). The old run met that budget by ~6x (fp32 p99 0.034 ms), so the choice
was made by the deterministic parity rule; the test lifts the latency budget so that it is made by that rule
here too. Everything else — data, models, thresholds, costs, monitors — runs as `mlsd fraud all` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.artifacts import Artifacts
from systems.fraud_edge import train

GOLDEN = Path(__file__).with_name("golden_small.json")
ATOL = 1e-6
# another CPU kind or thread count (conftest.golden_check): PR-AUC moved up to 6e-4, thresholds 0.0025, and
# with them a policy's cost by a few EUR (one transaction changes side) and int8's largest |dp| by 0.004
CROSS_CPU = {"": 0.005, "_eur": 100.0, "_pct": 1.0, "max_abs_diff_vs_fp32": 0.02}


@pytest.mark.slow
def test_all_small_matches_the_old_steps(fraud_cli, monkeypatch, golden_check, capture_threads) -> None:
    golden = json.loads(GOLDEN.read_text())
    monkeypatch.setattr(train, "MODEL_BUDGET_P99_MS", float("inf"))  # see the module docstring
    assert fraud_cli("all", "--scale", "small", "--seed", "0", "--no-mlflow") == 0
    art = Artifacts("fraud", "small")
    got = {
        "eval_report": json.loads(art.path("eval_report.json").read_text()),
        "train_report": json.loads(art.path("train_report.json").read_text()),
    }
    golden_check({part: golden[part] for part in got}, got, ATOL, file=GOLDEN, cross_cpu=CROSS_CPU)
