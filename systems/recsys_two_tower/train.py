"""The `train` step: point-in-time training set from Feast -> two towers -> ONNX user tower -> MLflow.

Runs in one process, or in several under torchrun (DDP, gloo on CPU / NCCL on GPU): each process takes
a slice of every global batch, and the result equals one process with the same global batch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel

from infra.console import progress as progress_of
from infra.registry import CHAMPION, Registry
from infra.serving.onnx import make_session
from systems.recsys_two_tower import layout
from systems.recsys_two_tower.config import TowerConfig, TrainConfig
from systems.recsys_two_tower.data import Feed
from systems.recsys_two_tower.features.definitions import USER_COLS
from systems.recsys_two_tower.features.repo import RecsysFeatures
from systems.recsys_two_tower.features.transform import user_inputs, video_inputs
from systems.recsys_two_tower.model import USER_DENSE, VIDEO_DENSE, TwoTower, TwoTowerLoss


@dataclass
class TrainingSet:
    """Tensors for both towers, one row per training watch, plus the logQ of each row's video."""

    user: tuple[np.ndarray, np.ndarray, np.ndarray]
    video: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    log_q: np.ndarray
    seen_videos: np.ndarray  # (n_videos,) bool: watched at least once in training

    def __len__(self) -> int:
        return len(self.log_q)

    def batch(self, idx: np.ndarray) -> list[torch.Tensor]:
        parts = [*self.user, *self.video, self.log_q]
        return [torch.from_numpy(np.ascontiguousarray(p[idx])) for p in parts]

    @cached_property
    def rows_by_video(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row order grouped by video, each video's first position in it, its row count)."""
        video = self.video[0]  # a row's id bucket stands for its video: one bucket per trained video
        order = np.argsort(video, kind="stable")
        starts = np.flatnonzero(np.r_[True, video[order][1:] != video[order][:-1]])
        return order, starts, np.diff(np.r_[starts, len(order)])

    def uniform_negatives(self, rng: np.random.Generator, m: int) -> tuple[torch.Tensor, ...]:
        """m videos drawn uniformly from those with training rows, each with the video inputs of one of its rows
        (its features as of that watch), and log(m / N), the log of each one's expected count in the draw."""
        order, starts, counts = self.rows_by_video
        pick = rng.integers(0, len(starts), m)
        rows = order[starts[pick] + (rng.random(m) * counts[pick]).astype(np.int64)]
        log_q = np.full(m, np.log(m / len(starts)), np.float32)
        return (
            *(torch.from_numpy(np.ascontiguousarray(p[rows])) for p in self.video),
            torch.from_numpy(log_q),
        )


def training_frame(
    feed: Feed, features: RecsysFeatures, max_rows: int, engine: str = "local", min_completion: float = 0.0
) -> pd.DataFrame:
    """Training watches (completed at least `min_completion`) joined point-in-time to user_stats, video_content and
    video_popularity: by Feast's file offline store in this process (engine "local") or by Ray Data (engine
    "ray", offline_ray.historical)."""
    train = feed.events[feed.events["ts"] < feed.split_ts]
    train = train[train["completion"] >= min_completion]
    train = train.sort_values("ts").tail(max_rows)
    entity_df = pd.DataFrame(
        {"user_id": train["user_id"].to_numpy(), "video_id": train["video_id"].to_numpy(),
         "event_timestamp": pd.to_datetime(train["ts"].to_numpy(), unit="s", utc=True)}
    )  # fmt: skip
    if engine == "ray":
        # here, not at the top: Ray takes seconds to import, and only --engine ray needs it
        from systems.recsys_two_tower import offline_ray

        with offline_ray.ray_engine() as runtime:
            frame = offline_ray.historical(features.repo.store, entity_df, features.training, runtime)
    elif engine == "local":
        frame = features.repo.historical(entity_df, features.training)
    else:
        raise ValueError(f"engine must be local or ray, got {engine!r}")
    # a watch of a video with no content row yet (none in the generated feed or MovieLens) cannot be embedded
    return frame[frame["topic"].notna()].reset_index(drop=True)


def seen_mask(feed: Feed) -> np.ndarray:
    seen = np.zeros(feed.config.n_videos, dtype=bool)
    seen[feed.events.loc[feed.events["ts"] < feed.split_ts, "video_id"].to_numpy()] = True
    return seen


def build_training_set(frame: pd.DataFrame, feed: Feed, cfg: TowerConfig) -> TrainingSet:
    seen = seen_mask(feed)
    user = user_inputs({c: frame[c] for c in ["user_id", *USER_COLS]}, cfg, seen)
    ts = frame["event_timestamp"].astype("int64").to_numpy() // 10**9
    video = video_inputs(frame, cfg, seen, ts)
    counts = np.bincount(frame["video_id"].to_numpy(), minlength=feed.config.n_videos)
    log_q = np.log(counts[frame["video_id"].to_numpy()] / len(frame)).astype(np.float32)
    return TrainingSet(user, video, log_q, seen)


def train_towers(
    data: TrainingSet,
    cfg: TowerConfig,
    tc: TrainConfig,
    progress: bool = True,
    after_epoch: Callable[[int, TwoTower], None] | None = None,
) -> tuple[TwoTower, list[float]]:
    """Adam on the in-batch softmax loss; returns the model and the per-epoch mean loss. `after_epoch(epoch,
    model)` runs after each epoch (the tune step scores the model on validation there)."""
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    world = torch.distributed.get_world_size() if dist else 1
    rank = torch.distributed.get_rank() if dist else 0
    torch.manual_seed(tc.seed)
    model = TwoTower(cfg)
    wrapped: torch.nn.Module = TwoTowerLoss(model)
    if dist:
        wrapped = DistributedDataParallel(wrapped)
    sparse = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
    dense = [p for p in model.parameters() if all(p is not q for q in sparse)]
    optimizers = [torch.optim.SparseAdam(sparse, lr=tc.lr), torch.optim.Adam(dense, lr=tc.lr)]
    rng = np.random.default_rng(tc.seed)
    n_batches = len(data) // tc.batch_size
    if tc.batch_size % world:
        raise ValueError(f"batch size {tc.batch_size} must divide evenly over {world} processes")
    shard = tc.batch_size // world
    losses = []
    for epoch in range(tc.epochs):
        order = rng.permutation(len(data))  # same permutation in every process (same seed)
        total = 0.0
        batches = progress_of(
            range(n_batches), f"epoch {epoch + 1}/{tc.epochs}", disable=not progress or rank != 0
        )
        for b in batches:
            idx = order[b * tc.batch_size : (b + 1) * tc.batch_size][rank * shard : (rank + 1) * shard]
            negatives = data.uniform_negatives(rng, cfg.uniform_negatives) if cfg.uniform_negatives else ()
            loss = wrapped(*data.batch(idx), global_batch=tc.batch_size, negatives=negatives)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            total += float(loss.detach()) / world
        if dist:
            t = torch.tensor([total])
            torch.distributed.all_reduce(t)
            total = float(t)
        losses.append(total / max(n_batches, 1))
        if after_epoch is not None:
            model.eval()
            after_epoch(epoch + 1, model)
            model.train()
    return model, losses


def export_user_tower(model: TwoTower, path: Path) -> float:
    """ONNX export of the user tower; returns the max |onnx - torch| on a random batch (must be < 1e-4)."""
    cfg = model.cfg
    tower = model.user.eval()
    b = 8
    example = (
        torch.randint(1, cfg.user_buckets, (b,)),
        torch.rand(b, USER_DENSE),
        torch.randint(0, cfg.video_buckets, (b, cfg.history_len)),
    )
    torch.onnx.export(
        tower, example, str(path), input_names=["user_bucket", "dense", "history"], output_names=["embedding"],
        dynamic_axes={"user_bucket": {0: "batch"}, "dense": {0: "batch"}, "history": {0: "batch"},
                      "embedding": {0: "batch"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    sess = make_session(path, threads=1)
    got = sess.run(
        None, {"user_bucket": example[0].numpy(), "dense": example[1].numpy(), "history": example[2].numpy()}
    )[0]
    with torch.no_grad():
        want = tower(*example).numpy()
    return float(np.abs(got - want).max())


def export_video_tower(model: TwoTower, path: Path) -> float:
    """ONNX export of the video tower (the catalog embedding's batch inference); max |onnx - torch| on a batch."""
    cfg = model.cfg
    tower = model.video.eval()
    b = 8
    example = (
        torch.randint(1, cfg.video_buckets, (b,)),
        torch.randint(0, tower.topic_emb.num_embeddings, (b,)),
        torch.randint(1, cfg.creator_buckets, (b,)),
        torch.rand(b, VIDEO_DENSE),
    )
    names = ["video_bucket", "topic", "creator_bucket", "dense"]
    torch.onnx.export(
        tower, example, str(path), input_names=names, output_names=["embedding"],
        dynamic_axes={n: {0: "batch"} for n in [*names, "embedding"]}, opset_version=17, dynamo=False,
    )  # fmt: skip
    got = make_session(path, threads=1).run(
        None, {n: t.numpy() for n, t in zip(names, example, strict=True)}
    )[0]
    with torch.no_grad():
        want = tower(*example).numpy()
    return float(np.abs(got - want).max())


def save_model(model: TwoTower, out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / layout.TWO_TOWER_FILE)
    (out / layout.MODEL_CONFIG_FILE).write_text(json.dumps({"tower": model.cfg.to_dict(), **meta}, indent=2))


def load_model(out: Path) -> TwoTower:
    if not (out / layout.TWO_TOWER_FILE).exists():
        raise FileNotFoundError(f"no trained model in {out}; run `mlsd recsys train` first")
    meta = json.loads((out / layout.MODEL_CONFIG_FILE).read_text())
    model = TwoTower(TowerConfig(**meta["tower"]))
    model.load_state_dict(torch.load(out / layout.TWO_TOWER_FILE, weights_only=True))
    return model.eval()


def run_train(feed: Feed, features: RecsysFeatures, root: Path, tc: TrainConfig) -> dict:
    """The whole step: join, train, export, log to MLflow and register the user tower as champion."""
    cfg = tc.tower()
    t0 = time.perf_counter()
    frame = training_frame(feed, features, tc.max_rows, tc.engine, tc.min_completion)
    join_s = time.perf_counter() - t0
    data = build_training_set(frame, feed, cfg)
    t1 = time.perf_counter()
    model, losses = train_towers(data, cfg, tc)
    train_s = time.perf_counter() - t1
    model_dir = root / layout.MODEL_DIR
    model_dir.mkdir(parents=True, exist_ok=True)
    parity = max(export_user_tower(model, root / layout.USER_TOWER_ONNX),
                 export_video_tower(model, root / layout.VIDEO_TOWER_ONNX))  # fmt: skip
    if parity > 1e-4:
        raise RuntimeError(f"an ONNX tower differs from PyTorch by {parity:.2e} (> 1e-4)")
    np.save(root / layout.SEEN_VIDEOS, data.seen_videos)
    save_training_set(data, root / layout.TRAINING_SET)  # the cross-model experiment reuses it
    # a row whose user had no snapshot with watches yet: it trains the tower on an empty history (section 11)
    empty_history = float((data.user[2] == 0).all(axis=1).mean())
    metrics = {"final_loss": losses[-1], "onnx_max_abs_diff": parity, "join_seconds": join_s,
               "train_seconds": train_s, "rows": len(data), "rows_with_empty_history": empty_history}  # fmt: skip
    params = {
        "epochs": tc.epochs,
        "batch_size": tc.batch_size,
        "lr": tc.lr,
        "max_rows": tc.max_rows,
        "min_completion": tc.min_completion,
        "seed": tc.seed,
        "join_engine": tc.engine,
    }
    save_model(model, model_dir, {"train": params, "metrics": metrics, "losses": losses})
    registry = Registry()
    run_id = registry.log_run(
        "recsys_two_tower",
        params={**params, **cfg.to_dict(), "scale_videos": feed.config.n_videos},
        metrics=metrics,
        artifacts={"model": model_dir},
        step_metrics={"epoch_loss": losses},
        run_name=f"two_tower_{feed.config.n_videos}",
    )
    ref = registry.register("recsys_two_tower", run_id, "model", alias=CHAMPION)
    return {**metrics, "losses": losses, "model_version": ref.version, "run_id": run_id}


def ddp_main() -> None:
    """Entry point for `torchrun -m systems.recsys_two_tower.train`: trains on a saved training set."""
    p = argparse.ArgumentParser()
    p.add_argument(
        "--data", type=Path, required=True, help="a training_set.npz written by `save_training_set`"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--config", type=str, default="{}", help="TowerConfig overrides as JSON")
    args = p.parse_args()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    data = load_training_set(args.data)
    cfg = TowerConfig(**json.loads(args.config))
    model, losses = train_towers(
        data, cfg, TrainConfig(epochs=args.epochs, batch_size=args.batch_size), False
    )
    if torch.distributed.get_rank() == 0:
        torch.save(model.state_dict(), args.out)
    torch.distributed.destroy_process_group()


def save_training_set(data: TrainingSet, path: Path) -> None:
    np.savez(path, *data.user, *data.video, data.log_q, data.seen_videos)


def load_training_set(path: Path) -> TrainingSet:
    z = np.load(path)
    a = [z[f"arr_{i}"] for i in range(9)]
    return TrainingSet((a[0], a[1], a[2]), (a[3], a[4], a[5], a[6]), a[7], a[8])


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ddp_main()
