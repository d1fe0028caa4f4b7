"""The golden check: `mlsd fraud all --scale small` gives the numbers the old code gave, step by step, on seed 0.

golden_small.json holds what the old steps wrote (its "about" says how they were run). Every number must agree
within 1e-6; strings (the bundle version, the served variant) exactly.

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


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": [1, 2]}} -> {"a.b.0": 1, "a.b.1": 2}."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}


def differences(golden: dict, got: dict) -> tuple[list[str], float]:
    """What differs beyond ATOL (or is missing), and the largest numeric difference seen."""
    want, have = flatten(golden), flatten(got)
    wrong, largest = [], 0.0
    for key, expected in want.items():
        if key not in have:
            wrong.append(f"{key}: missing")
        elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
            diff = abs(float(have[key]) - float(expected))
            largest = max(largest, diff)
            if diff > ATOL:
                wrong.append(f"{key}: {have[key]!r} != {expected!r} (|diff| {diff:.3g})")
        elif have[key] != expected:
            wrong.append(f"{key}: {have[key]!r} != {expected!r}")
    return wrong, largest


@pytest.mark.slow
def test_all_small_matches_the_old_steps(fraud_cli, monkeypatch) -> None:
    golden = json.loads(GOLDEN.read_text())
    monkeypatch.setattr(train, "MODEL_BUDGET_P99_MS", float("inf"))  # see the module docstring
    assert fraud_cli("all", "--scale", "small", "--seed", "0", "--no-mlflow") == 0
    art = Artifacts("fraud", "small")
    got = {
        "eval_report": json.loads(art.path("eval_report.json").read_text()),
        "train_report": json.loads(art.path("train_report.json").read_text()),
    }
    wrong, largest = [], 0.0
    for part in ("eval_report", "train_report"):
        w, d = differences(golden[part], got[part])
        wrong += [f"{part}.{line}" for line in w]
        largest = max(largest, d)
    print(f"largest |diff| from the old numbers: {largest:.3g}")
    assert not wrong, (
        f"{len(wrong)} numbers differ from the old code's (largest |diff| {largest:.3g}):\n"
        + "\n".join(wrong[:20])
    )
