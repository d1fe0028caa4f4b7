"""Golden check: `mlsd rag all --scale small` gives the evaluation numbers the old code printed when its steps were
run one by one on seed 0 (golden_small.json says where they came from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.artifacts import Artifacts
from mlsd.cli import main
from systems.rag_search.config import ANSWER_CONFIG, EVAL

GOLDEN = Path(__file__).with_name("golden_small.json")
TOLERANCE = 1e-6


def metric_differences(golden: dict, new: dict, prefix: str = "") -> dict[str, float]:
    """|golden - new| for every number in golden, by its path (a metric missing from `new` counts as inf)."""
    out: dict[str, float] = {}
    for key, want in golden.items():
        path = f"{prefix}{key}"
        if isinstance(want, dict):
            out |= metric_differences(want, new.get(key, {}), f"{path}.")
        elif isinstance(want, int | float):
            got = new.get(key)
            out[path] = abs(float(want) - float(got)) if isinstance(got, int | float) else float("inf")
    return out


@pytest.mark.slow
def test_all_at_small_scale_reproduces_the_old_numbers() -> None:
    assert main(["rag", "all", "--scale", "small", "--seed", "0"]) == 0
    art = Artifacts("rag", "small")
    new = json.loads(art.path(EVAL).read_text())
    new["train"] = json.loads(art.path(ANSWER_CONFIG).read_text())
    golden = {k: v for k, v in json.loads(GOLDEN.read_text()).items() if not k.startswith("_")}
    assert new["split"] == golden.pop("split")
    diffs = metric_differences(golden, new)
    worst = max(diffs, key=diffs.get)
    off = {k: d for k, d in diffs.items() if d > TOLERANCE}
    assert not off, (
        f"{len(off)} of {len(diffs)} numbers differ by more than {TOLERANCE}; largest {worst}: {diffs[worst]}"
    )
