"""Batch norm at inference: the failures (forgotten eval(), batch size 1, batch composition, shifted inputs,
small training batches) and the fixes (eval mode, LayerNorm/GroupNorm, recalibrated running statistics).

In train mode BatchNorm normalises each feature with the CURRENT batch's mean and variance, so a sample's output
depends on the other samples in its batch (and a batch of one has no variance at all). In eval mode it uses
running averages collected in training, which are wrong when the serving distribution has moved. LayerNorm and
GroupNorm normalise within each sample: no batch dependence, no running statistics to go stale.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from infra.steps import OneLineParser

NORMS = ("batch", "layer", "group")


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(dim)
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "group":
        return nn.GroupNorm(4, dim)
    raise ValueError(f"unknown norm '{kind}'; choose one of {', '.join(NORMS)}")


class MLP(nn.Module):
    """norm(x) -> Linear -> norm -> ReLU -> Linear -> norm -> ReLU -> Linear; the first norm standardises the
    raw features (the job a BatchNorm input layer does in many tabular and vision models)."""

    def __init__(self, norm: str, d_in: int = 16, width: int = 64, n_classes: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            make_norm(norm, d_in),
            nn.Linear(d_in, width),
            make_norm(norm, width),
            nn.ReLU(),
            nn.Linear(width, width),
            make_norm(norm, width),
            nn.ReLU(),
            nn.Linear(width, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C)


def make_data(n: int, seed: int, d: int = 16, n_classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian classes whose means share a common offset (so the feature means are not zero)."""
    g = torch.Generator().manual_seed(1234)  # the class means are fixed across seeds: one task, new samples
    means = torch.randn(n_classes, d, generator=g) * 0.9 + 3.0
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    x = means[y] + torch.randn(n, d, generator=g) * torch.linspace(0.5, 2.0, d)
    return x, y


def shift(x: torch.Tensor, gain: float = 2.0, offset: float = 1.0) -> torch.Tensor:
    """A serving-time shift applied to every feature, e.g. a new sensor's gain and offset."""
    return x * gain + offset


def train_model(norm: str, batch: int = 64, steps: int = 400, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    model = MLP(norm)
    x, y = make_data(8192, seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        i = torch.randint(0, len(x), (batch,), generator=g)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def accuracy_in_batches(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, train_mode: bool
) -> float:
    """Accuracy when serving `batch` samples at a time; train_mode=True is the forgotten model.eval()."""
    model = copy.deepcopy(model)  # train-mode forwards also overwrite running stats: keep the original intact
    model.train(train_mode)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            correct += (model(x[start : start + batch]).argmax(1) == y[start : start + batch]).sum().item()
    return correct / len(x)


def recalibrate(model: nn.Module, unlabeled: torch.Tensor, batch: int = 256) -> nn.Module:
    """Recompute BatchNorm running mean/var on serving-time inputs (no labels, no gradient steps)."""
    model = copy.deepcopy(model)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # None = cumulative average over all recalibration batches
    model.train()
    with torch.no_grad():
        for start in range(0, len(unlabeled), batch):
            model(unlabeled[start : start + batch])
    return model.eval()


def scenarios(seed: int = 0, steps: int = 400) -> dict[str, dict[str, float | str]]:
    """Accuracy of each normalisation under each serving condition (rows) -> {norm: accuracy or 'error: ...'}."""
    x, y = make_data(2048, seed + 1)
    order = torch.argsort(y, stable=True)  # batches that hold a single class, e.g. traffic grouped by region
    xs, ys = shift(x), y
    unlabeled = shift(make_data(1024, seed + 2)[0])
    models = {norm: train_model(norm, steps=steps, seed=seed) for norm in NORMS}
    small_batch = {norm: train_model(norm, batch=4, steps=steps, seed=seed) for norm in NORMS}
    rows: dict[str, dict[str, float | str]] = {}

    def row(name: str, fn) -> None:
        rows[name] = {}
        for norm in NORMS:
            try:
                rows[name][norm] = fn(norm)
            except (ValueError, RuntimeError) as exc:
                rows[name][norm] = f"{type(exc).__name__}: " + str(exc).split(" when")[0]

    row("eval(), batches of 256", lambda n: accuracy_in_batches(models[n], x, y, 256, False))
    row("eval(), batch size 1", lambda n: accuracy_in_batches(models[n], x[:512], y[:512], 1, False))
    row("forgot eval(): batches of 256", lambda n: accuracy_in_batches(models[n], x, y, 256, True))
    row("forgot eval(): batches of 8", lambda n: accuracy_in_batches(models[n], x, y, 8, True))
    row(
        "forgot eval(): single-class batches",
        lambda n: accuracy_in_batches(models[n], x[order], y[order], 256, True),
    )
    row("forgot eval(): batch size 1", lambda n: accuracy_in_batches(models[n], x[:64], y[:64], 1, True))
    row("eval(), shifted inputs (2x + 1)", lambda n: accuracy_in_batches(models[n], xs, ys, 256, False))
    row(
        "shifted, BN stats recalibrated",
        lambda n: accuracy_in_batches(recalibrate(models[n], unlabeled), xs, ys, 256, False),
    )
    row("trained with batches of 4, eval()", lambda n: accuracy_in_batches(small_batch[n], x, y, 256, False))
    return rows


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals batchnorm", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(1)  # tiny MLPs: threads only add contention on shared CPUs
    table = Table(title="test accuracy of the same MLP with each normalisation (4 classes, chance 25%)")
    table.add_column("serving condition")
    for norm in ("BatchNorm", "LayerNorm", "GroupNorm(4)"):
        table.add_column(norm, justify="right")
    for name, accs in scenarios(args.seed, args.steps).items():
        table.add_row(name, *(a if isinstance(a, str) else f"{a:.1%}" for a in accs.values()))
    Console(width=110).print(table)
    return 0
