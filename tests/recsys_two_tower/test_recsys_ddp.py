"""torchrun + DDP on 2 CPU processes (gloo) gives the same towers as one process with the same global batch."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from systems.recsys_two_tower.model import USER_DENSE, VIDEO_DENSE, TowerConfig
from systems.recsys_two_tower.train import TrainConfig, TrainingSet, save_training_set, train_towers

CFG = {"user_buckets": 128, "video_buckets": 256, "creator_buckets": 32, "hidden": 16, "out_dim": 8}


def _synthetic(n: int = 512, seed: int = 0) -> TrainingSet:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 50, 256)
    video = rng.integers(1, 256, n)
    return TrainingSet(
        (
            rng.integers(1, 128, n),
            rng.random((n, USER_DENSE), dtype=np.float32),
            rng.integers(0, 256, (n, 20)),
        ),
        (
            video,
            rng.integers(0, 16, n),
            rng.integers(1, 32, n),
            rng.random((n, VIDEO_DENSE), dtype=np.float32),
        ),
        np.log(counts[video] / counts.sum()).astype(np.float32),
        np.ones(256, dtype=bool),
    )


@pytest.mark.slow
def test_two_process_ddp_equals_single_process(tmp_path: Path) -> None:
    data = _synthetic()
    save_training_set(data, tmp_path / "train.npz")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "systems.recsys_two_tower.train", "--data", str(tmp_path / "train.npz"),
           "--out", str(tmp_path / "ddp.pt"), "--epochs", "2", "--batch-size", "64", "--config", json.dumps(CFG)]  # fmt: skip
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=240,
        env={"OMP_NUM_THREADS": "1", **__import__("os").environ},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)

    single, _ = train_towers(data, TowerConfig(**CFG), TrainConfig(epochs=2, batch_size=64), progress=False)
    half, _ = train_towers(data, TowerConfig(**CFG), TrainConfig(epochs=2, batch_size=32), progress=False)
    worst = max(float((single.state_dict()[k] - v).abs().max()) for k, v in ddp.items())
    control = max(float((half.state_dict()[k] - v).abs().max()) for k, v in ddp.items())
    assert worst < 1e-5, f"DDP and one process differ by {worst:.2e}"
    assert control > 1e-3, "a different global batch should give different weights (the test can fail)"
