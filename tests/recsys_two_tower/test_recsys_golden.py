"""Golden check: `mlsd recsys all --scale small` gives the evaluation numbers the old code printed when its steps
were run one by one (data, features, train, index, eval at the small scale, seed 0, before the restructure).

golden_small.json holds those numbers, copied from the old run's eval.json and index/sweep.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.artifacts import Artifacts
from infra.steps import run_cli
from systems.recsys_two_tower import pipeline

GOLDEN = Path(__file__).parent / "golden_small.json"
TOL = 1e-6
# another CPU kind (conftest.golden_check): the generator's float sampling and the towers moved recall/nDCG by up
# to 0.011 between two kinds
CROSS_CPU = 0.03


@pytest.mark.slow
def test_all_small_reproduces_the_old_numbers(
    monkeypatch: pytest.MonkeyPatch, golden_check, capture_threads
) -> None:
    monkeypatch.setenv("MLSD_SEED", "0")
    # what `mlsd recsys all --scale small` runs (mlsd.cli hands the same argv to run_cli)
    assert run_cli("recsys", pipeline.STEPS, ["all", "--scale", "small"], pipeline.ALL_CONFIG) == 0
    art = Artifacts("recsys", "small")
    got_eval = json.loads((art.root / "eval.json").read_text())
    got_ann = json.loads((art.root / "index" / "sweep.json").read_text())["chosen"]
    assert (art.root / "cross.json").exists(), "`all` runs the cross experiment too (bench reads cross.json)"

    golden = json.loads(GOLDEN.read_text())
    got = {"eval": {"users": got_eval["users"], "table": got_eval["table"]},
           "ann_chosen": {k: got_ann[k] for k in golden["ann_chosen"]}}  # fmt: skip
    golden_check(
        {"eval": golden["eval"], "ann_chosen": golden["ann_chosen"]},
        got,
        TOL,
        file=GOLDEN,
        cross_cpu=CROSS_CPU,
    )
