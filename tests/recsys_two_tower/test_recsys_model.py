"""Model tests: hashing, the in-batch loss, learning, and the ONNX user tower's parity with PyTorch."""

from pathlib import Path

import numpy as np
import torch

from systems.recsys_two_tower.model import (
    USER_DENSE,
    VIDEO_DENSE,
    TowerConfig,
    TwoTower,
    hash_ids,
    in_batch_softmax_loss,
    two_tower_loss,
)
from systems.recsys_two_tower.train import export_user_tower

CFG = TowerConfig(user_buckets=256, video_buckets=512, creator_buckets=64, hidden=32, out_dim=16)


def test_hash_ids_range_and_padding() -> None:
    h = hash_ids(np.array([-1, 0, 1, 10**12]), 512)
    assert h[0] == 0 and (h[1:] >= 1).all() and (h < 512).all()
    assert (hash_ids(np.arange(10_000), 512) == hash_ids(np.arange(10_000), 512)).all()


def test_loss_is_softmax_with_logq_correction() -> None:
    torch.manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    log_q = torch.log(torch.tensor([0.7, 0.1, 0.1, 0.1]))
    logits = (u @ v.T) / 0.1 - log_q  # a popular video (q = 0.7) is pushed down as a negative
    want = -torch.log_softmax(logits, dim=1).diag().sum()
    assert torch.allclose(in_batch_softmax_loss(u, v, log_q, 0.1), want)
    # in a larger global batch, row i's positive sits at offset + i
    v_big = torch.cat([torch.randn(3, 8), v])
    q_big = torch.cat([torch.zeros(3), log_q])
    logits_big = (u @ v_big.T) / 0.1 - q_big
    want_big = -torch.log_softmax(logits_big, dim=1)[torch.arange(4), torch.arange(4) + 3].sum()
    assert torch.allclose(in_batch_softmax_loss(u, v_big, q_big, 0.1, offset=3), want_big)


def _batch(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(1, CFG.user_buckets, (n,), generator=g),
        torch.rand(n, USER_DENSE, generator=g),
        torch.randint(0, CFG.video_buckets, (n, CFG.history_len), generator=g),
        torch.randint(1, CFG.video_buckets, (n,), generator=g),
        torch.randint(0, 16, (n,), generator=g),
        torch.randint(1, CFG.creator_buckets, (n,), generator=g),
        torch.rand(n, VIDEO_DENSE, generator=g),
        torch.full((n,), float(np.log(1 / n))),
    ]


def test_can_overfit_one_batch() -> None:
    torch.manual_seed(0)
    model = TwoTower(CFG)
    batch = _batch(64)
    sparse_params = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
    sparse = torch.optim.SparseAdam(sparse_params, lr=1e-2)
    dense = torch.optim.Adam(
        [p for p in model.parameters() if all(p is not q for q in sparse_params)], lr=1e-2
    )
    first = float(two_tower_loss(model, *batch, global_batch=64).detach())
    for _ in range(150):
        loss = two_tower_loss(model, *batch, global_batch=64)
        sparse.zero_grad()
        dense.zero_grad()
        loss.backward()
        sparse.step()
        dense.step()
    assert first > np.log(64) * 0.9  # starts near chance
    assert float(loss.detach()) < 0.2 * first


def test_onnx_user_tower_matches_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(1)
    diff = export_user_tower(TwoTower(CFG), tmp_path / "user.onnx")
    assert diff < 1e-4


def test_trained_model_beats_baselines(recsys_pipeline) -> None:
    table = recsys_pipeline.eval["table"]
    tt = table["two-tower ANN (serving index)"]["recall@100"]
    assert tt > 3 * table["most-popular (last 7 days)"]["recall@100"]
    assert table["oracle (true preferences)"]["recall@100"] > tt > table["random"]["recall@100"]
    losses = recsys_pipeline.train["losses"]
    assert losses[-1] < losses[0]
    assert recsys_pipeline.train["onnx_max_abs_diff"] < 1e-4


def test_sweep_chooses_cheapest_setting_meeting_recall(recsys_pipeline) -> None:
    rows = recsys_pipeline.index["sweep"]
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["recall_at_100"] >= 0.95
    ok = [r for r in rows[1:] if r["recall_at_100"] >= 0.95]
    assert chosen[0]["distances_per_query"] == min(r["distances_per_query"] for r in ok)
    assert chosen[0]["distances_per_query"] < rows[0]["distances_per_query"]  # cheaper than exact
    # recall rises with nprobe inside one index
    ivf = [r["recall_at_100"] for r in rows if r["nlist"] == 64]
    assert ivf == sorted(ivf)
