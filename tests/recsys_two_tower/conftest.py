"""One small recsys pipeline per test session, built by the pipeline's own steps (data -> features -> train
-> index -> rank -> eval) and shared by the stage tests; each test points MLSD_DATA_DIR at it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.artifacts import Artifacts
from infra.config import get_settings
from systems.recsys_two_tower import pipeline
from systems.recsys_two_tower.config import (
    DataConfig,
    EvalConfig,
    FeaturesConfig,
    IndexConfig,
    RankConfig,
    TrainConfig,
)

# smaller than the defaults so the session builds in seconds: smaller hash tables, 3 epochs, 400 users, one nlist
SMALL = {"scale": "small", "seed": 0}
TRAIN = TrainConfig(**SMALL, epochs=3, batch_size=512, user_buckets=1 << 12, video_buckets=1 << 13, creator_buckets=1 << 10)  # fmt: skip


@dataclass
class Pipeline:
    data_dir: Path
    workdir: Path
    train: dict
    index: dict
    rank: dict
    eval: dict


@pytest.fixture(scope="session")
def recsys_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    data_dir = tmp_path_factory.mktemp("recsys")
    old = {k: os.environ.get(k) for k in ("MLSD_DATA_DIR", "MLSD_ONLINE_STORE", "MLFLOW_TRACKING_URI")}
    os.environ["MLSD_DATA_DIR"] = str(data_dir)
    os.environ.pop("MLSD_ONLINE_STORE", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    get_settings.cache_clear()
    try:
        art = Artifacts("recsys", "small")
        pipeline.data(DataConfig(**SMALL), art)
        pipeline.features(FeaturesConfig(**SMALL), art)
        pipeline.train(TRAIN, art)
        pipeline.index(IndexConfig(**SMALL, eval_users=400, nlist=(64,)), art)
        pipeline.rank(RankConfig(**SMALL, rank_users=1000, rank_epochs=150), art)
        pipeline.evaluate(EvalConfig(**SMALL, eval_users=400), art)
        model = json.loads((art.root / "model" / "config.json").read_text())
        yield Pipeline(
            data_dir,
            art.root,
            train={**model["metrics"], "losses": model["losses"]},
            index=json.loads((art.root / "index" / "sweep.json").read_text()),
            rank=json.loads((art.root / "rank" / "meta.json").read_text()),
            eval=json.loads((art.root / "eval.json").read_text()),
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@pytest.fixture
def recsys_env(recsys_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    monkeypatch.setenv("MLSD_DATA_DIR", str(recsys_pipeline.data_dir))
    monkeypatch.setenv("MLSD_SCALE", "small")
    get_settings.cache_clear()
    return recsys_pipeline
