"""The models: DeepFM's FM term against brute force, learning, recalibration, ONNX parity."""

from pathlib import Path

import numpy as np
import pytest
import torch

from infra.metrics import normalized_entropy
from systems.ctr.evaluate import quality, recalibrate
from systems.ctr.model import CalibratedScorer, DeepFM, HashedLogReg
from systems.ctr.train import FitConfig, Fitted, downsample_negatives, export_onnx, fit


def test_fm_term_equals_the_sum_over_pairs() -> None:
    torch.manual_seed(0)
    model = DeepFM(n_buckets=100, n_fields=4, n_numeric=2, dim=3)
    cat = torch.randint(0, 100, (5, 4))
    num = torch.randn(5, 2)
    v = torch.cat([model.embed(cat), num.unsqueeze(-1) * model.num_embed], dim=1)  # (B, 6, D)
    pairs = sum((v[:, i] * v[:, j]).sum(-1) for i in range(6) for j in range(i + 1, 6))
    fm = 0.5 * (v.sum(1).pow(2) - v.pow(2).sum(1)).sum(1)
    torch.testing.assert_close(fm, pairs)


def _learnable(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clicks that depend on a field interaction: LR cannot express it, DeepFM can."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 4, n), rng.integers(0, 4, n)
    logit = -1.5 + 1.5 * (a == b)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    cat = np.stack([a, 10 + b], axis=1).astype(np.int64)
    return cat, np.zeros((n, 2), dtype=np.float32), y


def test_deepfm_learns_an_interaction_lr_cannot() -> None:
    cat, num, y = _learnable()
    results = {}
    for kind in ("lr", "deepfm"):
        fitted = fit(
            FitConfig(kind=kind, epochs=6, batch_size=256, negative_keep_rate=1.0, n_buckets=32),
            cat,
            num,
            y,
        )
        assert fitted.losses[-1] < fitted.losses[0]  # the loss falls
        results[kind] = quality(y, fitted.predict(cat, num)).auc
    assert results["deepfm"] > results["lr"] + 0.1


def test_overfits_one_batch() -> None:
    rng = np.random.default_rng(1)
    cat = rng.integers(0, 1000, (32, 5)).astype(np.int64)
    num = rng.normal(size=(32, 2)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    fitted = fit(
        FitConfig(kind="deepfm", epochs=120, lr=3e-2, batch_size=32, negative_keep_rate=1.0, n_buckets=1000),
        cat,
        num,
        y,
    )
    assert fitted.losses[-1] < 0.05


def test_recalibration_formula_equals_the_logit_shift() -> None:
    p = np.linspace(0.01, 0.99, 50)
    w = 0.25
    logit = torch.logit(torch.tensor(p))
    shifted = torch.sigmoid(logit + np.log(w)).numpy()
    np.testing.assert_allclose(recalibrate(p, w), shifted, rtol=1e-9)


def test_downsampling_then_recalibration_restores_the_base_rate() -> None:
    rng = np.random.default_rng(2)
    n = 40_000
    cat = rng.integers(0, 8, (n, 1)).astype(np.int64)
    p_true = 0.02 + 0.01 * cat[:, 0]
    y = (rng.random(n) < p_true).astype(np.int64)
    num = np.zeros((n, 2), dtype=np.float32)
    fitted = fit(
        FitConfig(kind="lr", epochs=5, batch_size=128, negative_keep_rate=0.2, n_buckets=8), cat, num, y
    )
    p = fitted.predict(cat, num)
    assert p.mean() / y.mean() == pytest.approx(1.0, abs=0.08)
    raw = CalibratedScorer(fitted.model, 1.0)(torch.from_numpy(cat), torch.from_numpy(num)).detach().numpy()
    assert raw.mean() / y.mean() > 2.5  # without the correction the model over-predicts ~1/w-fold


def test_downsample_keeps_every_positive() -> None:
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0] * 1000)
    idx = downsample_negatives(y, 0.5, np.random.default_rng(0))
    assert y[idx].sum() == y.sum()
    assert 0.45 < (y[idx] == 0).sum() / (y == 0).sum() < 0.55


def test_normalized_entropy_of_the_base_rate_is_one() -> None:
    y = np.array([1, 0, 0, 0] * 250)
    assert normalized_entropy(y, np.full(y.size, 0.25)) == pytest.approx(1.0)
    assert normalized_entropy(y, np.where(y == 1, 0.9, 0.1)) < 0.5


@pytest.mark.parametrize("kind", ["lr", "deepfm"])
def test_onnx_export_matches_pytorch(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    model = HashedLogReg(64, 2) if kind == "lr" else DeepFM(64, 9, 2)
    fitted = Fitted(model.eval(), FitConfig(kind=kind, n_buckets=64, negative_keep_rate=0.5))
    export_onnx(fitted, tmp_path / "m.onnx")  # raises when ONNX Runtime and PyTorch disagree
    assert (tmp_path / "m.onnx").stat().st_size > 0
