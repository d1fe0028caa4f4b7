"""The offline pipeline on Ray gives what the single-process path gives: the same training rows, the same online
features (SQLite, Redis, Redis Cluster) and the same catalog embeddings; and recsys serves from a Redis Cluster."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.recsys.offline_ray import compare_joins
from infra.features import FeatureRepo
from systems.recsys_two_tower import data, offline_ray
from systems.recsys_two_tower.features import definitions
from systems.recsys_two_tower.features.definitions import USER_COLS
from systems.recsys_two_tower.features.repo import OFFLINE_DIR, open_features
from systems.recsys_two_tower.index import catalog_frame, embed_catalog, run_index
from systems.recsys_two_tower.train import export_video_tower, load_model, training_frame


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray (1 CPU) for the module: each engine="ray" call below finds it running and reuses it."""
    with offline_ray.ray_engine(num_cpus=1) as runtime:
        yield runtime


# ------------------------------------------------------------------------------------------ no Ray needed
def test_asof_join_matches_a_brute_force_scan() -> None:
    rng = np.random.default_rng(0)
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    feats = pd.DataFrame({"k": rng.integers(0, 20, 400), "event_timestamp": t0 + pd.to_timedelta(rng.permutation(400) * 60, unit="s"),
                          "v": rng.normal(size=400)})  # fmt: skip
    ents = pd.DataFrame({"k": rng.integers(0, 25, 300), "event_timestamp": t0 + pd.to_timedelta(rng.integers(-600, 30_000, 300), unit="s")})  # fmt: skip
    for ttl in (None, timedelta(hours=2)):
        got = offline_ray.asof_join(ents.assign(row=np.arange(300)), feats, "k", ttl).sort_values("row")
        for row in got.itertuples():
            ok = feats[(feats["k"] == row.k) & (feats["event_timestamp"] <= row.event_timestamp)]
            if ttl is not None:
                ok = ok[ok["event_timestamp"] >= row.event_timestamp - ttl]
            want = ok.sort_values("event_timestamp")["v"].iloc[-1] if len(ok) else np.nan
            assert (np.isnan(want) and np.isnan(row.v)) or row.v == want


def test_key_partition_is_stable_and_covers_every_partition() -> None:
    keys = np.arange(10_000, dtype=np.int64)
    parts = offline_ray.key_partition(keys, 8)
    assert parts.min() == 0 and parts.max() == 7 and np.bincount(parts).min() > 1_000  # spread, not skewed
    np.testing.assert_array_equal(parts, offline_ray.key_partition(keys.copy(), 8))


# ------------------------------------------------------------------------------------------ Ray against local
# slow: a local Ray takes ~10 s to start and its workers seconds to import pandas and Ray Data
@pytest.mark.slow
def test_ray_join_gives_the_same_training_rows(recsys_env, ray_runtime) -> None:
    feed = data.load(recsys_env.workdir)
    features = open_features(recsys_env.workdir, "small")
    local = training_frame(feed, features, 5_000, engine="local")
    ray_rows = training_frame(feed, features, 5_000, engine="ray")
    assert len(local) > 4_900
    pd.testing.assert_frame_equal(local, ray_rows[local.columns])


@pytest.mark.slow
def test_two_watches_in_one_second_both_get_features_on_ray(recsys_env, ray_runtime) -> None:
    """Two entity rows with the same user and second (two videos): the Ray join gives each its point-in-time
    features. Feast's file store alone keeps one entity row per (user, timestamp) of the user view and returns
    the other with no features at all; FeatureRepo.historical joins each view on its distinct keys, so the local
    join now agrees with Ray's on every row."""
    feed = data.load(recsys_env.workdir)
    features = open_features(recsys_env.workdir, "small")
    watches = feed.events[feed.events["ts"] < feed.split_ts].tail(200)
    entity_df = pd.DataFrame({"user_id": watches["user_id"].to_numpy(), "video_id": watches["video_id"].to_numpy(),
                              "event_timestamp": pd.to_datetime(watches["ts"].to_numpy(), unit="s", utc=True)})  # fmt: skip
    twin = entity_df.iloc[[0]].assign(video_id=int(entity_df["video_id"].iloc[1]))  # same user, same second
    entity_df = pd.concat([entity_df, twin], ignore_index=True)
    on_ray = offline_ray.historical(features.repo.store, entity_df, features.training, ray_runtime)
    user_cols = [c for c in USER_COLS if c in on_ray.columns]
    assert on_ray.loc[[0, len(entity_df) - 1], user_cols].notna().all().all()
    assert (
        on_ray.loc[0, user_cols] == on_ray.loc[len(entity_df) - 1, user_cols]
    ).all()  # one user, one second
    local = features.repo.historical(entity_df, features.training)
    got = compare_joins(local, on_ray[local.columns], entity_df)
    assert got["rows_differing"] == 0


def _online(repo: FeatureRepo, users: list[int]) -> dict:
    rows, _ = repo.online([f"user_stats:{c}" for c in USER_COLS], [{"user_id": u} for u in users])
    return rows


def _two_repos(root: Path, name: str, store: str, url: str | None) -> tuple[FeatureRepo, FeatureRepo]:
    """Two Feast repos (own projects, so own keys) on the same offline files and online store."""
    defs = definitions.build(root / OFFLINE_DIR).all()
    repos = []
    for engine in ("local", "ray"):
        repo = FeatureRepo(
            f"{name}_{engine}", root.parent / f"repo_{name}_{engine}", online_store=store, redis_url=url
        )
        repo.apply(defs)
        repos.append(repo)
    return repos[0], repos[1]


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", pytest.param("redis", marks=pytest.mark.redis),
                                   pytest.param("redis_cluster", marks=pytest.mark.redis)])  # fmt: skip
def test_ray_materialisation_writes_the_same_online_features(
    recsys_env, ray_runtime, store: str, unique_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = {"redis": "redis_url", "redis_cluster": "redis_cluster_url"}.get(store)
    url = request.getfixturevalue(url) if url else None
    root = tmp_path / "recsys"
    shutil.copytree(recsys_env.workdir / OFFLINE_DIR, root / OFFLINE_DIR)
    local, via_ray = _two_repos(root, unique_name, store, url)
    feed = data.load(recsys_env.workdir)
    start = datetime.fromtimestamp(data.START_TS - data.DAY, UTC)
    end = datetime.fromtimestamp(data.START_TS + feed.config.days * data.DAY, UTC)
    try:
        local.materialize(start, end, views=["user_stats"])
        written = offline_ray.materialize(
            via_ray.store, via_ray.repo_dir, "user_stats", start, end, ray_runtime
        )
        assert written == feed.config.n_users  # every user has a signup row
        users = [*range(0, feed.config.n_users, 7), feed.config.n_users + 5]  # and one unknown user
        want, got = _online(local, users), _online(via_ray, users)
        assert got == want
        assert want["watches_30d"][-1] is None and any(w for w in want["watches_30d"][:-1])
    finally:  # both projects' keys: the machine's Redis is shared (SQLite's file goes with tmp_path)
        local.store.teardown()
        via_ray.store.teardown()


@pytest.mark.slow
def test_ray_embedding_gives_the_same_vectors(recsys_env, ray_runtime, tmp_path: Path) -> None:
    feed = data.load(recsys_env.workdir)
    features = open_features(recsys_env.workdir, "small")
    model = load_model(recsys_env.workdir / "model")
    seen = np.load(recsys_env.workdir / "model" / "seen_videos.npy")
    assert export_video_tower(model, tmp_path / "video_tower.onnx") < 1e-5
    frame = catalog_frame(feed, features, feed.split_ts)
    want = embed_catalog(model, frame, seen, feed.split_ts)  # the index step's single-process path (torch)
    got = offline_ray.embed_catalog(tmp_path / "video_tower.onnx", frame, model.cfg, seen, feed.split_ts,
                                    ray_runtime, batch_size=1_000)  # fmt: skip
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
def test_index_step_on_ray_builds_the_same_index(recsys_env, ray_runtime, tmp_path: Path) -> None:
    """`mlsd recsys index --engine ray`: the catalog embedded by Ray actors (the exported ONNX video tower), the
    same vectors as the torch path within ONNX's float error, and the same setting chosen."""
    root = tmp_path / "recsys"
    shutil.copytree(recsys_env.workdir, root)
    feed = data.load(root)
    features = open_features(root, "small")
    model = load_model(root / "model")
    queries = np.load(root / "index" / "catalog_emb.npy")[:200]  # any fixed queries: the two runs share them
    local = run_index(model, feed, features, root, queries, (64,), engine="local")
    want = np.load(root / "index" / "catalog_emb.npy")
    on_ray = run_index(model, feed, features, root, queries, (64,), engine="ray")
    np.testing.assert_allclose(np.load(root / "index" / "catalog_emb.npy"), want, atol=1e-5)
    assert on_ray["embed_engine"] == "ray" and local["embed_engine"] == "local"
    pick = ("index", "nlist", "nprobe")
    assert {k: on_ray["chosen"][k] for k in pick} == {k: local["chosen"][k] for k in pick}
