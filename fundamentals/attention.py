"""Causal multi-head self-attention written out step by step, plus a KV cache for incremental decoding.

For one new token x_t (the last position): q_t = x_t W_q; K, V = X_{<=t} W_k, X_{<=t} W_v; per head
scores = q_t K^T / sqrt(d_head) (the causal mask is implicit: only positions <= t exist in the cache);
p = softmax(scores); head = p V; concat heads; out = concat W_o. A KV cache stores K and V of past tokens so
each decode step projects one token instead of the whole prefix: O(D^2 + tD) instead of O(tD^2 + t^2 D).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from infra.steps import OneLineParser


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, minGPT style, with separate q/k/v/o projections."""

    def __init__(self, d_model: int, n_heads: int, bias: bool = True) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; pick n_heads dividing it"
            )
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, Dh)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, _, T, _ = x.shape
        return x.transpose(1, 2).reshape(B, T, self.d_model)  # (B, T, D): heads concatenated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full causal forward pass, every step explicit. x: (B, T, D) -> (B, T, D)."""
        T = x.shape[1]
        q = self.split_heads(self.q_proj(x))  # (B, H, T, Dh)
        k = self.split_heads(self.k_proj(x))  # (B, H, T, Dh)
        v = self.split_heads(self.v_proj(x))  # (B, H, T, Dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # query i sees keys j <= i
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)  # (B, H, T, T), rows sum to 1
        heads = probs @ v  # (B, H, T, Dh)
        return self.o_proj(self.merge_heads(heads))  # (B, T, D)

    def forward_sdpa(self, x: torch.Tensor) -> torch.Tensor:
        """The same layer using the fused reference kernel F.scaled_dot_product_attention."""
        q, k, v = (self.split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        return self.o_proj(self.merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True)))


@dataclass
class KVCache:
    """Keys and values of every token seen so far, (B, H, T, Dh) each."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def nbytes(self) -> int:
        return 0 if self.k is None else self.k.numel() * self.k.element_size() * 2


def decode_step(attn: CausalSelfAttention, x_t: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Attention output for ONE new token given the cache of past keys/values. x_t: (B, 1, D) -> (B, 1, D)."""
    q = attn.split_heads(attn.q_proj(x_t))  # (B, H, 1, Dh)
    k_new = attn.split_heads(attn.k_proj(x_t))  # (B, H, 1, Dh)
    v_new = attn.split_heads(attn.v_proj(x_t))  # (B, H, 1, Dh)
    k, v = cache.append(k_new, v_new)  # (B, H, t, Dh): the new token plus everything before it
    scores = q @ k.transpose(-2, -1) / math.sqrt(attn.d_head)  # (B, H, 1, t); no mask: no future in the cache
    probs = torch.softmax(scores, dim=-1)  # (B, H, 1, t)
    return attn.o_proj(attn.merge_heads(probs @ v))  # (B, 1, D)


def decode_all(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Feed x one token at a time through the KV cache; must equal the full causal forward pass."""
    cache = KVCache()
    return torch.cat([decode_step(attn, x[:, t : t + 1], cache) for t in range(x.shape[1])], dim=1)


def flops_per_token(d_model: int, t: int, cached: bool = True) -> int:
    """Multiply-adds x 2 for the t-th decoded token of one attention layer (t = context length incl. itself).

    With a cache: 4 projections of one token (8 D^2) + scores and weighted sum over t keys (4 t D).
    Without: recompute the whole prefix, 8 t D^2 + 4 t^2 D (causal masking is not exploited by dense kernels).
    """
    if cached:
        return 8 * d_model * d_model + 4 * t * d_model
    return 8 * t * d_model * d_model + 4 * t * t * d_model


def kv_bytes_per_token(
    d_model: int, n_layers: int = 1, bytes_per_el: int = 2, n_kv_heads_ratio: float = 1.0
) -> int:
    """KV cache growth per token: K and V, D values each (times kv_heads/heads for GQA/MQA), per layer."""
    return int(2 * d_model * n_kv_heads_ratio * n_layers * bytes_per_el)


def measured_decode_flops(attn: CausalSelfAttention, t: int, seed: int = 0) -> int:
    """FLOPs torch counts (FlopCounterMode) for decoding token t of a batch of 1 with a warm cache of t - 1."""
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator().manual_seed(seed)
    cache = KVCache()
    with torch.no_grad():
        if t > 1:
            decode_all_into(attn, torch.randn(1, t - 1, attn.d_model, generator=g), cache)
        counter = FlopCounterMode(display=False)
        with counter:
            decode_step(attn, torch.randn(1, 1, attn.d_model, generator=g), cache)
    return counter.get_total_flops()


def decode_all_into(attn: CausalSelfAttention, x: torch.Tensor, cache: KVCache) -> None:
    """Prefill the cache with x's keys and values (one projection of the whole prompt)."""
    cache.append(attn.split_heads(attn.k_proj(x)), attn.split_heads(attn.v_proj(x)))


def step_by_step_shapes(attn: CausalSelfAttention, x: torch.Tensor) -> list[tuple[str, tuple[int, ...], str]]:
    """Walk the LAST token of x through the layer, recording each intermediate's shape."""
    B, T, D = x.shape
    rows = []
    x_t = x[:, -1:]
    rows.append(("x_t (new token)", tuple(x_t.shape), "(B, 1, D)"))
    q = attn.split_heads(attn.q_proj(x_t))
    rows.append(("q = x_t W_q, split heads", tuple(q.shape), "(B, H, 1, Dh)"))
    k = attn.split_heads(attn.k_proj(x))
    v = attn.split_heads(attn.v_proj(x))
    rows.append(("K, V = X W_k, X W_v", tuple(k.shape), "(B, H, T, Dh), cached for tokens < T"))
    scores = q @ k.transpose(-2, -1) / math.sqrt(attn.d_head)
    rows.append(("scores = q K^T / sqrt(Dh)", tuple(scores.shape), "(B, H, 1, T)"))
    rows.append(("causal mask", tuple(scores.shape), "last row: all T keys visible, nothing masked"))
    probs = torch.softmax(scores, dim=-1)
    rows.append(("p = softmax(scores)", tuple(probs.shape), f"row sums = {probs.sum(-1).mean().item():.6f}"))
    heads = probs @ v
    rows.append(("head_h = p V", tuple(heads.shape), "(B, H, 1, Dh)"))
    concat = attn.merge_heads(heads)
    rows.append(("concat heads", tuple(concat.shape), "(B, 1, H*Dh = D)"))
    out = attn.o_proj(concat)
    rows.append(("out = concat W_o", tuple(out.shape), "(B, 1, D)"))
    return rows


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals attention", description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    torch.manual_seed(args.seed)
    attn = CausalSelfAttention(args.d_model, args.heads).eval()
    x = torch.randn(args.batch, args.seq, args.d_model)
    console = Console(width=110)

    table = Table(title=f"one output token, B={args.batch} T={args.seq} D={args.d_model} H={args.heads}")
    for col in ("step", "shape", "note"):
        table.add_column(col)
    for name, shape, note in step_by_step_shapes(attn, x):
        table.add_row(name, str(shape), note)
    console.print(table)

    with torch.no_grad():
        full = attn(x)
        t0 = time.perf_counter()
        cached = decode_all(attn, x)
        t_cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        recompute = torch.cat([attn(x[:, : t + 1])[:, -1:] for t in range(args.seq)], dim=1)
        t_recompute = time.perf_counter() - t0
        sdpa = attn.forward_sdpa(x)
        ref = nn.MultiheadAttention(args.d_model, args.heads, batch_first=True)
        ref.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        ref.out_proj.load_state_dict(attn.o_proj.state_dict())
        mask = torch.ones(args.seq, args.seq, dtype=torch.bool).triu(1)
        mha = ref(x, x, x, attn_mask=mask, need_weights=False)[0]
    check = Table(title="hand-written attention vs references (max |diff|, float32)")
    for col in ("comparison", "max |diff|", f"time for {args.seq} tokens"):
        check.add_column(col)
    check.add_row("full forward vs F.scaled_dot_product_attention", f"{(full - sdpa).abs().max():.1e}", "")
    check.add_row(
        "full forward vs nn.MultiheadAttention (same weights)", f"{(full - mha).abs().max():.1e}", ""
    )
    check.add_row(
        "KV-cache decode vs full forward", f"{(cached - full).abs().max():.1e}", f"{t_cached * 1e3:.1f} ms"
    )
    check.add_row(
        "re-run prefix per token vs full forward",
        f"{(recompute - full).abs().max():.1e}",
        f"{t_recompute * 1e3:.1f} ms",
    )
    console.print(check)

    D = args.d_model
    cost = Table(title=f"per decoded token, one layer, D={D} (FLOPs = 2 x multiply-adds; KV in bf16)")
    for col in (
        "context t",
        "FLOPs with cache",
        "FLOPs without (re-run prefix)",
        "ratio = t",
        "KV cache at t",
    ):
        cost.add_column(col, justify="right")
    for t in (128, 1024, 8192, 32768):
        f_c, f_n = flops_per_token(D, t, True), flops_per_token(D, t, False)
        cost.add_row(
            str(t),
            f"{f_c:.3g}",
            f"{f_n:.3g}",
            f"{f_n / f_c:.0f}x",
            f"{kv_bytes_per_token(D) * t / 1024:.0f} KiB",
        )
    console.print(cost)
    console.print(
        f"check: torch FlopCounterMode on one cached decode step at t={args.seq}: "
        f"{measured_decode_flops(attn, args.seq):.4g} FLOPs, formula 8D^2 + 4tD = {flops_per_token(D, args.seq):.4g}"
    )
    console.print(
        f"KV cache grows {kv_bytes_per_token(D)} B/token/layer here; a 32-layer D=4096 model in bf16: "
        f"{kv_bytes_per_token(4096, 32) / 2**20:.2f} MiB/token (GQA with 8 of 32 KV heads: "
        f"{kv_bytes_per_token(4096, 32, n_kv_heads_ratio=0.25) / 2**20:.3f} MiB)"
    )
    return 0
