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


@pytest.mark.slow
def test_all_at_small_scale_reproduces_the_old_numbers(golden_check, capture_threads) -> None:
    assert main(["rag", "all", "--scale", "small", "--seed", "0"]) == 0
    art = Artifacts("rag", "small")
    new = json.loads(art.path(EVAL).read_text())
    new["train"] = json.loads(art.path(ANSWER_CONFIG).read_text())
    golden = {k: v for k, v in json.loads(GOLDEN.read_text()).items() if not k.startswith("_")}
    assert new["split"] == golden.pop("split")
    golden_check(golden, new, TOLERANCE)
