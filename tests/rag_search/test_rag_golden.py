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
# another CPU kind (conftest.golden_check): retrieval and answer metrics moved by up to 0.01, and the tuned refusal
# threshold by 0.064 (it sits on a plateau of the tuning objective), taking refusal accuracy 0.048 with it
CROSS_CPU = {"": 0.03, "train.refuse_below": 0.1, "generation.extractive.refusal_accuracy": 0.1}


@pytest.mark.slow
def test_all_at_small_scale_reproduces_the_old_numbers(golden_check, capture_threads) -> None:
    assert main(["rag", "all", "--scale", "small", "--seed", "0"]) == 0
    art = Artifacts("rag", "small")
    new = json.loads(art.path(EVAL).read_text())
    new["train"] = json.loads(art.path(ANSWER_CONFIG).read_text())
    golden = {k: v for k, v in json.loads(GOLDEN.read_text()).items() if not k.startswith("_")}
    assert new["split"] == golden.pop("split")
    golden_check(golden, new, TOLERANCE, file=GOLDEN, cross_cpu=CROSS_CPU)
