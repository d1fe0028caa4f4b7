"""A tiny end-to-end pipeline (data -> train -> bundle), built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from systems.fraud_edge.data import SimConfig

TINY = SimConfig.tiny()


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(artifact dir, train report) after `data` and `train` on the tiny stream."""
    from systems.fraud_edge.train import TrainConfig, build_data, train

    out = tmp_path_factory.mktemp("fraud")
    build_data(TINY, out)
    report = train(TrainConfig(epochs=30, lgbm_rounds=60), out=out, log_mlflow=False, progress=False)
    return out, report
