"""The offline pipeline, single process vs Ray Data with 1 and 2 CPUs: rows/s of the point-in-time training join,
keys/s of the materialisation, vectors/s of the catalog embedding.

    PYTHONPATH=$PWD .venv/bin/python -m mlsd.cli recsys features --scale medium   # the feed and its Feast repo
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.offline_ray --scale medium --cpus 1 2
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.offline_ray --scale large --stages join embed

The embedding uses a video tower with the default shape and its initial weights: throughput does not depend on
the weights, and this keeps the bench independent of a trained model. Ray's start-up is timed apart from the work
(a long-lived cluster pays it once). `--stages` picks what is timed (join, materialize, embed; default all three);
a stage left out shows as null. Writes benchmarks/results/recsys/offline_ray/<scale>.json.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from infra.artifacts import Artifacts
from infra.bench.report import write_json
from infra.features import FeatureRepo
from infra.serving.onnx import make_session
from systems.recsys_two_tower import offline_ray
from systems.recsys_two_tower.config import TowerConfig
from systems.recsys_two_tower.data import DAY, START_TS, load
from systems.recsys_two_tower.features import definitions
from systems.recsys_two_tower.features.repo import OFFLINE_DIR, open_features
from systems.recsys_two_tower.index import embed_catalog
from systems.recsys_two_tower.model import TwoTower
from systems.recsys_two_tower.train import export_video_tower, seen_mask

OUT_DIR = Path(__file__).resolve().parents[1] / "results" / "recsys" / "offline_ray"
STAGES = ("join", "materialize", "embed")


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """fn(*args) and its wall time in seconds."""
    t0 = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t0


def _rate(n: int, seconds: float | None) -> float | None:
    """n / seconds, or None for a stage that was not run."""
    return None if seconds is None else n / seconds


def compare_joins(local: pd.DataFrame, ray_joined: pd.DataFrame, entity_df: pd.DataFrame) -> dict[str, Any]:
    """Row by row, Feast's file-store join against the Ray join (both in entity_df's order). Where they differ,
    count the rows Feast returned with no feature at all while another entity row has the same user and second:
    Feast's file store keeps one entity row per (join key, timestamp) of a view and the other comes back empty
    (a watch logged in the same second as another by the same user); the Ray join gives both their features."""
    differ = ~(local.fillna(-1).to_numpy() == ray_joined.fillna(-1).to_numpy()).all(axis=1)
    features = [c for c in local.columns if c not in entity_df.columns]
    feast_empty = local[features].isna().all(axis=1).to_numpy()
    same_second = entity_df.duplicated(["user_id", "event_timestamp"], keep=False).to_numpy()
    return {"same_training_rows": bool(not differ.any()), "rows_differing": int(differ.sum()),
            "rows_differing_feast_empty_same_user_second": int((differ & feast_empty & same_second).sum())}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--scale", default="medium")
    p.add_argument("--cpus", type=int, nargs="+", default=[1, 2])
    p.add_argument(
        "--join-rows", type=int, default=400_000, help="training watches joined (train's --max-rows)"
    )
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="what to time")
    p.add_argument(
        "--out", type=Path, default=None, help="report (default: results/recsys/offline_ray/<scale>.json)"
    )
    args = p.parse_args()
    out = args.out or OUT_DIR / f"{args.scale}.json"
    stages = set(args.stages)
    load_at_start = os.getloadavg()[0]
    art = Artifacts("recsys", args.scale)
    feed = load(art.root)
    features = open_features(art.root, args.scale)
    store = features.repo.store

    train = feed.events[feed.events["ts"] < feed.split_ts].sort_values("ts").tail(args.join_rows)
    entity_df = pd.DataFrame(
        {"user_id": train["user_id"].to_numpy(), "video_id": train["video_id"].to_numpy(),
         "event_timestamp": pd.to_datetime(train["ts"].to_numpy(), unit="s", utc=True)}
    )  # fmt: skip
    catalog_entities = pd.DataFrame(
        {"video_id": feed.videos["video_id"].to_numpy(), "event_timestamp": pd.Timestamp(feed.split_ts, unit="s", tz="UTC")}
    )  # fmt: skip
    start = datetime.fromtimestamp(START_TS - DAY, UTC)
    end = datetime.fromtimestamp(START_TS + feed.config.days * DAY, UTC)
    cfg = TowerConfig()
    torch.manual_seed(0)
    model = TwoTower(cfg).eval()
    onnx_path = art.root / "bench_video_tower.onnx"
    export_video_tower(model, onnx_path)
    seen = seen_mask(feed)
    n_users = feed.config.n_users

    rows: list[dict] = []
    # single process: Feast's file offline store and materialize; torch and ONNX Runtime embedding (1 thread)
    torch.set_num_threads(1)
    joined, join_s = (
        _timed(lambda: features.repo.historical(entity_df, features.training))
        if "join" in stages
        else (None, None)
    )
    mat_s = torch_s = onnx_s = None
    if "materialize" in stages:
        local_repo = FeatureRepo(f"bench_{args.scale}_local", art.root / "bench_repo_local")
        local_repo.apply(definitions.build(art.root / OFFLINE_DIR).all())
        _, mat_s = _timed(lambda: local_repo.materialize(start, end, views=["user_stats"]))
    if "embed" in stages:
        # the catalog frame (input of the embedding, not timed): the same as-of rule, in process, as Feast's
        # 1M-row join is minutes here
        catalog = catalog_entities
        for spec in offline_ray.view_sources(store, features.catalog):
            catalog = offline_ray.asof_join(catalog, spec.read(), spec.key, spec.ttl)
        catalog = catalog.sort_values("video_id").reset_index(drop=True)
        catalog = catalog.fillna({"topic": 0, "creator_id": 0, "duration_s": 1, "upload_ts": feed.split_ts})
        torch_emb, torch_s = _timed(lambda: embed_catalog(model, catalog, seen, feed.split_ts))
        session = make_session(onnx_path, threads=1, prefer_gpu=False)
        chunks = [catalog.iloc[i : i + 16_384] for i in range(0, len(catalog), 16_384)]
        onnx_emb, onnx_s = _timed(
            lambda: np.concatenate(
                [offline_ray.embed_onnx(session, c, cfg, seen, feed.split_ts) for c in chunks]
            )
        )
    rows.append({"engine": "local (Feast file store; torch | ONNX Runtime, 1 thread)", "cpus": 1,
                 "join_rows_per_s": _rate(len(entity_df), join_s), "materialize_keys_per_s": _rate(n_users, mat_s),
                 "embed_vectors_per_s_torch": _rate(len(catalog_entities), torch_s),
                 "embed_vectors_per_s": _rate(len(catalog_entities), onnx_s), "ray_start_s": 0.0})  # fmt: skip
    print(rows[-1], flush=True)

    for cpus in args.cpus:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"engine": f"ray ({cpus} CPU{'s' if cpus > 1 else ''}, local)", "cpus": cpus}
        with offline_ray.ray_engine(num_cpus=cpus) as runtime:
            row["ray_start_s"] = time.perf_counter() - t0
            if "join" in stages:
                ray_joined, rjoin_s = _timed(
                    offline_ray.historical, store, entity_df, features.training, runtime
                )
                row["join_rows_per_s"] = len(entity_df) / rjoin_s
                row |= compare_joins(joined, ray_joined[joined.columns], entity_df)
            if "materialize" in stages:
                ray_repo = FeatureRepo(f"bench_{args.scale}_ray{cpus}", art.root / f"bench_repo_ray{cpus}")
                ray_repo.apply(definitions.build(art.root / OFFLINE_DIR).all())
                written, rmat_s = _timed(
                    offline_ray.materialize,
                    ray_repo.store,
                    ray_repo.repo_dir,
                    "user_stats",
                    start,
                    end,
                    runtime,
                )
                row["materialize_keys_per_s"] = written / rmat_s
            if "embed" in stages:
                ray_emb, remb_s = _timed(
                    offline_ray.embed_catalog, onnx_path, catalog, cfg, seen, feed.split_ts, runtime
                )
                row["embed_vectors_per_s"] = len(catalog) / remb_s
                row["max_abs_diff_vs_onnx"] = float(np.abs(ray_emb - onnx_emb).max())
        rows.append(
            {"join_rows_per_s": None, "materialize_keys_per_s": None, "embed_vectors_per_s": None} | row
        )
        print(rows[-1], flush=True)

    report = {
        "command": f"PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.offline_ray --scale {args.scale} "
        f"--cpus {' '.join(map(str, args.cpus))} --join-rows {args.join_rows} --stages {' '.join(args.stages)}",
        "stages": args.stages,
        "scale": args.scale,
        "join_rows": len(entity_df),
        "catalog_videos": len(catalog_entities),
        "users_materialized": n_users,
        "torch_vs_onnx_max_abs_diff": float(np.abs(torch_emb - onnx_emb).max())
        if "embed" in stages
        else None,
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_at_end": os.getloadavg()[0],
        "machine": f"{os.cpu_count()} CPUs",
        "rows": rows,
    }
    write_json(out, report)


if __name__ == "__main__":
    main()
