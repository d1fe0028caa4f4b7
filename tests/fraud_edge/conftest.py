"""A tiny end-to-end pipeline (data -> train -> bundle), built once per test session by the pipeline's own steps."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.artifacts import Artifacts
from infra.config import get_settings
from infra.steps import run_cli
from systems.fraud_edge import pipeline as fraud_pipeline
from systems.fraud_edge import train
from systems.fraud_edge.config import DataConfig, TrainConfig
from systems.fraud_edge.data import SimConfig

TINY = SimConfig.tiny()


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Artifacts, dict]:
    """(artifacts, train report) after the `data` and `train` steps on the tiny stream (SimConfig.tiny()).

    The latency budget is lifted here: which variant is served must not depend on how busy the machine is
    (on a loaded 2-core machine every variant can miss 0.2 ms p99, and then the fastest one is kept), so the
    deterministic parity rule picks it, as it does on a quiet machine. test_fraud_golden.py does the same."""
    # A data dir of the session's own (each test gets a fresh one after, from the autouse isolated_settings).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLSD_DATA_DIR", str(tmp_path_factory.mktemp("fraud")))
        mp.setattr(train, "MODEL_BUDGET_P99_MS", float("inf"))
        get_settings.cache_clear()
        art = Artifacts("fraud", "small")
        tiny = DataConfig(
            scale="small", seed=TINY.seed, cards=TINY.n_cards, terminals=TINY.n_terminals, days=TINY.days
        )
        fraud_pipeline.data(tiny, art)
        fraud_pipeline.train_step(
            TrainConfig(scale="small", seed=0, epochs=30, lgbm_rounds=60, mlflow=False), art
        )
    get_settings.cache_clear()
    return art, json.loads(art.path("train_report.json").read_text())


@pytest.fixture
def served_dir(pipeline, isolated_settings) -> Path:
    """A private copy of the tiny pipeline's artifacts in this test's data dir (tests may publish bundles)."""
    art, _ = pipeline
    dst = Artifacts("fraud", "small").root
    shutil.copytree(art.root, dst, dirs_exist_ok=True)
    return dst


@pytest.fixture
def fraud_cli() -> Callable[..., int]:
    """`mlsd fraud <argv>` in process, returning the exit code: the runner `mlsd` uses, with fraud's STEPS.

    Called through `infra.steps.run_cli` as `mlsd.cli.run_system_step` does, so that these tests do not
    depend on every other system being importable (`mlsd.cli.main` discovers them all first)."""

    def run(*argv: str) -> int:
        try:
            return run_cli("fraud", fraud_pipeline.STEPS, list(argv), fraud_pipeline.ALL_CONFIG)
        except SystemExit as exc:  # argparse: --help exits 0, a bad flag 2
            return int(exc.code or 0)

    return run
