"""Data-parallel training basics: DDP on 2 CPU processes (gloo) equals one process on the same global batch;
gradient accumulation equals a big batch; what all-reduce costs.

DDP keeps a full model copy per rank. Each step every rank runs forward/backward on its shard of the global
batch, then an all-reduce AVERAGES the gradients, so every rank applies the same update: with a mean loss and
equal shards, the average of shard gradients is exactly the gradient of the global-batch mean. Gradient
accumulation gets the same number in one process by summing loss / k over k micro-batches before one step.
A ring all-reduce of S bytes over N ranks sends (and receives) 2 (N - 1) / N * S bytes per rank per step.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from infra.steps import OneLineParser

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Config:
    d_in: int = 32
    width: int = 64
    n_classes: int = 4
    global_batch: int = 64
    steps: int = 20
    lr: float = 0.05
    seed: int = 0


def make_model(cfg: Config) -> nn.Module:
    torch.manual_seed(cfg.seed)  # every rank builds the same initial weights (DDP also broadcasts rank 0's)
    return nn.Sequential(nn.Linear(cfg.d_in, cfg.width), nn.ReLU(), nn.Linear(cfg.width, cfg.n_classes))


def global_batches(cfg: Config) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same sequence of global batches on every rank and in the single-process run."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    w = torch.randn(cfg.d_in, cfg.n_classes, generator=g)
    out = []
    for _ in range(cfg.steps):
        x = torch.randn(cfg.global_batch, cfg.d_in, generator=g)
        out.append((x, (x @ w).argmax(1)))
    return out


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)


def train_single(cfg: Config, accumulation: int = 1) -> dict[str, torch.Tensor]:
    """One process. accumulation=k: k micro-batches of global_batch / k, loss scaled by 1/k, one step."""
    if cfg.global_batch % accumulation:
        raise ValueError(f"global_batch={cfg.global_batch} is not divisible by accumulation={accumulation}")
    model = make_model(cfg)
    opt = make_optimizer(model, cfg)
    for x, y in global_batches(cfg):
        opt.zero_grad(set_to_none=True)
        for xm, ym in zip(x.chunk(accumulation), y.chunk(accumulation), strict=True):
            (F.cross_entropy(model(xm), ym) / accumulation).backward()  # grads add up across micro-batches
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_ddp_worker(cfg: Config, out: Path) -> None:
    """Entry point under torchrun: each rank trains on its shard; rank 0 saves the final weights."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.global_batch % world:
        raise ValueError(f"global_batch={cfg.global_batch} must divide evenly over {world} ranks")
    model = DDP(make_model(cfg))
    opt = make_optimizer(model, cfg)
    shard = cfg.global_batch // world
    for x, y in global_batches(cfg):
        xr, yr = x[rank * shard : (rank + 1) * shard], y[rank * shard : (rank + 1) * shard]  # (B / N, D)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xr), yr).backward()  # DDP's hooks all-reduce (average) the grads here
        opt.step()
    weights = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    gathered = [None] * world
    dist.all_gather_object(gathered, weights)  # to check that the replicas stayed identical
    if rank == 0:
        drift = max((w[k] - weights[k]).abs().max().item() for w in gathered for k in weights)
        torch.save({"weights": weights, "replica_drift": drift, "world": world}, out)
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_ddp(cfg: Config, out: Path, nproc: int = 2, timeout_s: float = 120) -> dict:
    """Run `python -m torch.distributed.run` with `nproc` gloo processes on this machine; return rank 0's result."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={nproc}",
        "--master-addr=127.0.0.1", f"--master-port={free_port()}",
        "-m", "fundamentals.distributed", "--worker", "--out", str(out),
        "--steps", str(cfg.steps), "--global-batch", str(cfg.global_batch), "--seed", str(cfg.seed),
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"torchrun with {nproc} gloo processes did not finish in {timeout_s:.0f} s"
        ) from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"torchrun failed (exit {proc.returncode}): " + " | ".join(tail))
    return torch.load(out, weights_only=True)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def allreduce_bytes_per_rank(n_bytes: float, world: int) -> float:
    """Ring all-reduce: reduce-scatter then all-gather, each moving (N - 1) / N of the buffer per rank."""
    return 2 * (world - 1) / world * n_bytes


def allreduce_seconds(n_bytes: float, world: int, bandwidth_gb_s: float) -> float:
    """Bandwidth-bound lower bound (ignores latency terms and overlap with backward)."""
    return allreduce_bytes_per_rank(n_bytes, world) / (bandwidth_gb_s * 1e9)


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals distributed", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=Config.steps)
    parser.add_argument("--global-batch", type=int, default=Config.global_batch)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(".mlsd/fundamentals/ddp_weights.pt"))
    parser.add_argument("--no-ddp", action="store_true", help="skip launching torchrun (formula tables only)")
    args = parser.parse_args(argv)
    cfg = Config(global_batch=args.global_batch, steps=args.steps, seed=args.seed)
    if args.worker:
        train_ddp_worker(cfg, args.out)
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(width=110)
    single = train_single(cfg)
    table = Table(
        title=f"{cfg.steps} SGD-momentum steps, global batch {cfg.global_batch}: max |weight diff| vs 1 process"
    )
    for col in ("run", "max |diff|", "seconds"):
        table.add_column(col, justify="right")
    for k in (2, 4, 8):
        t0 = time.perf_counter()
        acc = train_single(cfg, accumulation=k)
        table.add_row(
            f"1 process, {k} accumulated micro-batches of {cfg.global_batch // k}",
            f"{max_diff(acc, single):.1e}",
            f"{time.perf_counter() - t0:.2f}",
        )
    if not args.no_ddp:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        res = launch_ddp(cfg, args.out)
        seconds = time.perf_counter() - t0
        table.add_row(
            f"DDP, torchrun 2 gloo processes x {cfg.global_batch // 2}",
            f"{max_diff(res['weights'], single):.1e}",
            f"{seconds:.1f} (incl. start)",
        )
        table.add_row("DDP: rank 0 vs rank 1 replicas", f"{res['replica_drift']:.1e}", "")
    control = max_diff(train_on_first_half(cfg), single)
    table.add_row(
        f"(control) 1 process, first {cfg.global_batch // 2} of each batch only", f"{control:.1e}", ""
    )
    console.print(table)

    traffic = Table(
        title="ring all-reduce of fp32 gradients per step: bytes sent per rank = 2 (N-1)/N x size"
    )
    for col in ("model", "grad size", "N=2", "N=8", "N=64", "time at N=8, 100 GB/s"):
        traffic.add_column(col, justify="right")
    for name, params in (
        ("this MLP", sum(p.numel() for p in make_model(cfg).parameters())),
        ("ResNet-50", 25.6e6),
        ("BERT-large", 340e6),
        ("8B LLM", 8e9),
    ):
        size = params * 4
        traffic.add_row(
            name, human_bytes(size), *(human_bytes(allreduce_bytes_per_rank(size, n)) for n in (2, 8, 64)),
            f"{allreduce_seconds(size, 8, 100) * 1e3:.3g} ms",
        )  # fmt: skip
    console.print(traffic)
    return 0


def train_on_first_half(cfg: Config) -> dict[str, torch.Tensor]:
    """Control: training on only one rank's shard (no all-reduce) is NOT the same, so the matches above matter."""
    model = make_model(cfg)
    opt = make_optimizer(model, cfg)
    for x, y in global_batches(cfg):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[: len(x) // 2]), y[: len(y) // 2]).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


if __name__ == "__main__":
    raise SystemExit(demo(sys.argv[1:]))
