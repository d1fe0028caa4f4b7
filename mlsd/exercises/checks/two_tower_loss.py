"""Checks for the in-batch softmax loss: equal to an independent logsumexp formula and to the project's
(systems/recsys_two_tower/model.py); gradients reach both towers; finite at a small temperature. A wrong
value is compared with the usual mistakes (no logQ, logQ added, the temperature multiplied, a mean) to name it."""

from __future__ import annotations

from types import ModuleType

import torch
import torch.nn.functional as F

from mlsd.exercises.harness import Check, Failed
from systems.recsys_two_tower.model import in_batch_softmax_loss as project_loss

NAMES = ("in_batch_softmax_loss",)
B, D, TAU = 8, 16, 0.05
TOL = 1e-8


def batch(tau_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    u = F.normalize(torch.randn(B, D, generator=g, dtype=torch.float64), dim=-1)
    v = F.normalize(torch.randn(B, D, generator=g, dtype=torch.float64), dim=-1)
    log_q = torch.log(torch.rand(B, generator=g, dtype=torch.float64) * 0.02 + 1e-4)
    return u, v, log_q


def formula(u: torch.Tensor, v: torch.Tensor, log_q: torch.Tensor, tau: float, sign: float = -1.0,
            reduce: str = "sum") -> torch.Tensor:  # fmt: skip
    """sum_i logsumexp_j(s_ij) - s_ii with s_ij = u_i . v_j / tau + sign * log q_j."""
    s = u @ v.T / tau + sign * log_q[None, :]  # (B, B)
    per_row = torch.logsumexp(s, dim=1) - s.diagonal()
    return per_row.sum() if reduce == "sum" else per_row.mean()


def as_float(loss: object) -> float:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise Failed(f"returned {getattr(loss, 'shape', type(loss).__name__)}, expected a scalar tensor",
                     "reduce to one number: the cross entropy summed over the batch")  # fmt: skip
    return float(loss)


def value_is_right(m: ModuleType) -> bool:
    u, v, log_q = batch()
    want = float(formula(u, v, log_q, TAU))
    return abs(float(m.in_batch_softmax_loss(u, v, log_q, TAU)) - want) <= TOL * max(1.0, abs(want))


SAME_MISTAKE = "the loss's value is wrong at temperature 0.05 too: fix the first check, this one follows"


def equals_formula(m: ModuleType) -> None:
    u, v, log_q = batch()
    want = float(formula(u, v, log_q, TAU))
    assert abs(float(project_loss(u, v, log_q, TAU)) - want) < 1e-9  # the project's loss is the same formula
    got = as_float(m.in_batch_softmax_loss(u, v, log_q, TAU))
    if abs(got - want) <= TOL * max(1.0, abs(want)):
        return
    mistakes = {
        "subtract log Q(v_j) from every logit of column j: without it popular videos are over-punished as "
        "negatives": formula(u, v, torch.zeros_like(log_q), TAU),
        "SUBTRACT log Q (the correction lowers the logits of popular videos), do not add it": formula(
            u, v, log_q, TAU, sign=1.0),
        "DIVIDE the similarity by the temperature": formula(u, v, log_q, 1 / TAU),
        "sum the loss over the batch (reduction='sum'), as the project's loss does; not the mean": formula(
            u, v, log_q, TAU, reduce="mean"),
        "rows are users and columns videos: logits = u @ v.T (the labels are the diagonal)": formula(
            v, u, log_q, TAU),
    }  # fmt: skip
    for hint, value in mistakes.items():
        if abs(got - float(value)) <= 1e-8 * max(1.0, abs(float(value))):
            raise Failed(f"loss {got:.6f}, expected {want:.6f}", hint)
    raise Failed(f"loss {got:.6f}, expected {want:.6f}")


def gradients_reach_both_towers(m: ModuleType) -> None:
    u, v, log_q = (t.clone().requires_grad_(i < 2) for i, t in enumerate(batch()))
    loss = m.in_batch_softmax_loss(u, v, log_q, TAU)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise Failed("the loss has no gradient")
    loss.backward()
    u_ref, v_ref = (t.detach().clone().requires_grad_() for t in (u, v))
    project_loss(u_ref, v_ref, log_q.detach(), TAU).backward()
    for name, got, want in (("user", u.grad, u_ref.grad), ("video", v.grad, v_ref.grad)):
        if got is None or not torch.allclose(got, want, atol=1e-8):
            raise Failed(f"the {name} tower's gradient differs from the project's loss's",
                         None if value_is_right(m) else SAME_MISTAKE)  # fmt: skip


def finite_at_small_temperature(m: ModuleType) -> None:
    u, v, log_q = (t.float() for t in batch())
    got = as_float(m.in_batch_softmax_loss(u, v, log_q, 0.01))  # logits up to 100: exp(100) overflows float32
    want = float(formula(u.double(), v.double(), log_q.double(), 0.01))
    if not abs(got - want) <= 1e-3 * max(1.0, abs(want)):
        raise Failed(f"float32, temperature 0.01: loss {got}, expected {want:.4f}",
                     None if value_is_right(m) else SAME_MISTAKE)  # fmt: skip


def positives_on_the_diagonal(m: ModuleType) -> None:
    u, v, log_q = batch()
    perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
    a = as_float(m.in_batch_softmax_loss(u, v, log_q, TAU))
    b = as_float(m.in_batch_softmax_loss(u[perm], v[perm], log_q[perm], TAU))
    if abs(a - b) > 1e-8 * max(1.0, abs(a)):
        raise Failed(f"reordering the pairs (both towers alike) moved the loss from {a:.6f} to {b:.6f}")


CHECKS = [
    Check("equals sum_i logsumexp_j(u_i.v_j / tau - log q_j) - (u_i.v_i / tau - log q_i)", equals_formula,
          "logits = user_vecs @ video_vecs.T / temperature - log_q[None, :]; "
          "F.cross_entropy(logits, torch.arange(B), reduction='sum')"),
    Check("gradients reach both towers and equal the project's loss's", gradients_reach_both_towers,
          "compute with torch ops on the inputs (no .detach(), .item() or NumPy) so gradients flow to both towers"),
    Check("finite and exact in float32 at temperature 0.01 (logits up to 100)", finite_at_small_temperature,
          "exp(100) overflows float32: use F.cross_entropy or torch.logsumexp, which subtract the max"),
    Check("the positives are the diagonal: reordering the pairs leaves the loss unchanged", positives_on_the_diagonal,
          "row i's label is column i (torch.arange(B)): user i's own video"),
]  # fmt: skip
