"""Training: point-in-time rows -> LR and DeepFM -> ONNX -> MLflow.

Split by time (train on the first days, test on the last ones), downsample negatives for training and
undo it in the exported scorer, register both models: LR as `champion` (the incumbent), DeepFM as
`challenger` (what `mlsd ctr experiment` A/B-tests and promotes when it wins). How well they do on the
held-out days is evaluate.py's business (it imports this module, never the other way round).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from infra.console import progress_bar
from infra.registry import CHALLENGER, CHAMPION, ModelRef, Registry
from infra.serving.onnx import make_session
from systems.ctr.data import EPOCH
from systems.ctr.features import CAT_FIELDS, N_BUCKETS, NUM_FIELDS, model_inputs
from systems.ctr.model import CalibratedScorer, build_model

MODEL_NAME = "ctr"
ALIASES = {"lr": CHAMPION, "deepfm": CHALLENGER}  # the incumbent, and the model the A/B tests


@dataclass(frozen=True)
class FitConfig:
    """One model's training: its kind and the optimiser's settings."""

    kind: str = "deepfm"
    epochs: int = 3
    batch_size: int = 1024
    lr: float = 1e-2
    negative_keep_rate: float = 0.5  # w: share of negative impressions kept for training
    seed: int = 0
    cat_fields: tuple[str, ...] = CAT_FIELDS
    n_buckets: int = N_BUCKETS


@dataclass
class Fitted:
    """A trained model and what scoring it needs."""

    model: nn.Module
    config: FitConfig
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def predict(self, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
        """Calibrated click probabilities (negative downsampling undone)."""
        scorer = CalibratedScorer(self.model, self.config.negative_keep_rate).eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(cat), 65_536):
                out.append(
                    scorer(torch.from_numpy(cat[i : i + 65_536]), torch.from_numpy(num[i : i + 65_536]))
                )
        return torch.cat(out).numpy().astype(np.float64)


def downsample_negatives(y: np.ndarray, keep_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of all positives and a `keep_rate` share of negatives."""
    keep = (y == 1) | (rng.random(y.size) < keep_rate)
    return np.flatnonzero(keep)


def fit(config: FitConfig, cat: np.ndarray, num: np.ndarray, y: np.ndarray, progress: bool = False) -> Fitted:
    """Minibatch Adam on binary cross-entropy, on the negative-downsampled rows."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    idx = downsample_negatives(y, config.negative_keep_rate, rng)
    cat_t, num_t = torch.from_numpy(cat[idx]), torch.from_numpy(num[idx])
    y_t = torch.from_numpy(y[idx].astype(np.float32))
    model = build_model(config.kind, config.n_buckets, cat.shape[1], num.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * ((len(idx) + config.batch_size - 1) // config.batch_size)
    # linear decay to zero: the last steps cannot leave the intercept wherever a noisy batch pushed it
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1.0 - step / steps))
    loss_fn = nn.BCEWithLogitsLoss()
    fitted = Fitted(model, config)
    t0 = time.perf_counter()
    with progress_bar(steps, f"train {config.kind} (batches)", disable=not progress) as bar:
        for _epoch in range(config.epochs):
            perm = torch.from_numpy(rng.permutation(len(idx)))
            total, batches = 0.0, 0
            model.train()
            for i in range(0, len(idx), config.batch_size):
                b = perm[i : i + config.batch_size]
                loss = loss_fn(model(cat_t[b], num_t[b]), y_t[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                schedule.step()
                total += loss.item()
                batches += 1
                bar.update(1)
            fitted.losses.append(total / batches)
    model.eval()
    fitted.seconds = time.perf_counter() - t0
    return fitted


def export_onnx(fitted: Fitted, path: Path) -> Path:
    """The calibrated scorer as ONNX with a dynamic batch; checked against PyTorch before it is kept."""
    scorer = CalibratedScorer(fitted.model, fitted.config.negative_keep_rate).eval()
    n_fields = len(fitted.config.cat_fields)
    example = (torch.zeros(4, n_fields, dtype=torch.int64), torch.zeros(4, len(NUM_FIELDS)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the legacy exporter warns it is legacy; onnxscript is not installed
        warnings.simplefilter("ignore")
        torch.onnx.export(
        scorer, example, str(path), input_names=["cat", "num"], output_names=["p_click"],
        dynamic_axes={"cat": {0: "batch"}, "num": {0: "batch"}, "p_click": {0: "batch"}},
        opset_version=17, dynamo=False,
        )  # fmt: skip
    rng = np.random.default_rng(0)
    cat = rng.integers(0, fitted.config.n_buckets, (50, n_fields)).astype(np.int64)
    num = rng.normal(size=(50, len(NUM_FIELDS))).astype(np.float32)
    got = make_session(path, prefer_gpu=False).run(None, {"cat": cat, "num": num})[0]
    want = fitted.predict(cat, num)
    if not np.allclose(got, want, atol=1e-5):
        raise RuntimeError(
            f"ONNX export of {fitted.config.kind} disagrees with PyTorch (max diff {np.abs(got - want).max():.2e})"
        )
    return path


def split(rows: pd.DataFrame, test_days: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Temporal split: the last `test_days` days are the test set (no shuffling across time)."""
    day = (rows["event_timestamp"] - EPOCH).dt.days
    last = int(day.max())
    return rows[day <= last - test_days].reset_index(drop=True), rows[day > last - test_days].reset_index(
        drop=True
    )


def fit_rows(config: FitConfig, rows: pd.DataFrame, progress: bool = False) -> Fitted:
    """Fit on training rows: the shared transform (features.model_inputs), then `fit`."""
    cat, num = model_inputs(rows, cat_fields=config.cat_fields, n_buckets=config.n_buckets)
    return fit(config, cat, num, rows["click"].to_numpy(), progress=progress)


def save_model(fitted: Fitted, folder: Path) -> Path:
    """model.onnx and the config.json serving reads (fields, buckets) in one folder."""
    export_onnx(fitted, folder / "model.onnx")
    config = {**asdict(fitted.config), "cat_fields": list(fitted.config.cat_fields)}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def register(registry: Registry, fitted: Fitted, folder: Path, metrics: Mapping[str, float]) -> ModelRef:
    """Log the run (params, held-out metrics, loss curve, the model folder) and register it under its alias."""
    run_id = registry.log_run(
        "ctr",
        params={k: str(v) for k, v in asdict(fitted.config).items()},
        metrics=metrics,
        artifacts={"model": folder},
        run_name=fitted.config.kind,
        step_metrics={"train_loss": fitted.losses},
    )
    return registry.register(MODEL_NAME, run_id, "model", alias=ALIASES[fitted.config.kind])
