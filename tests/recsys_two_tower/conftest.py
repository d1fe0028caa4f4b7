"""One small recsys pipeline per test session (data -> features -> train -> index -> eval), shared by
the stage tests; each test points MLSD_DATA_DIR at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.config import get_settings


@dataclass
class Pipeline:
    data_dir: Path
    workdir: Path
    train: dict
    index: dict
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
        from systems.recsys_two_tower import data, evaluate, index, train
        from systems.recsys_two_tower.features.repo import build_features, feature_repo
        from systems.recsys_two_tower.model import TowerConfig

        feed = data.generate(data.SCALES["small"])
        wd = data.workdir("small")
        data.save(feed, wd)
        build_features(feed, wd, "small")
        repo = feature_repo(wd, "small")
        cfg = TowerConfig(user_buckets=1 << 12, video_buckets=1 << 13, creator_buckets=1 << 10)
        train_result = train.run_train(feed, repo, wd, train.TrainConfig(epochs=3, batch_size=512), cfg)
        model = train.load_model(wd / "model")
        users, _, _ = evaluate.eval_users(feed, 400, 0)
        import numpy as np

        queries = evaluate.user_vectors(
            model, repo, users, feed.split_ts - 1, np.load(wd / "model" / "seen_videos.npy")
        )
        index_result = index.run_index(model, feed, repo, wd, queries, (64,))
        eval_result = evaluate.run_eval(model, feed, repo, wd, max_users=400)
        yield Pipeline(data_dir, wd, train_result, index_result, eval_result)
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
