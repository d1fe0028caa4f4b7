"""Checks for one KV-cache decode step: token by token it equals F.scaled_dot_product_attention's causal pass;
the cache grows by one token a step; batch rows stay apart. Wrong answers are recognised by comparing with
known wrong variants (scale, softmax axis, a token that does not see itself)."""

from __future__ import annotations

import math
from types import ModuleType

import torch
import torch.nn.functional as F

from fundamentals.attention import CausalSelfAttention, KVCache, decode_all_into
from mlsd.exercises.harness import Check, Failed

NAMES = ("decode_step",)
B, T, D, H = 2, 6, 16, 4
TOL = 1e-9


def layer() -> tuple[CausalSelfAttention, torch.Tensor]:
    torch.manual_seed(0)
    attn = CausalSelfAttention(D, H).double().eval()
    x = torch.randn(B, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return attn, x


def reference(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The full causal pass through the fused kernel: (B, T, D)."""
    q, k, v = (attn.split_heads(p(x)) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    return attn.o_proj(attn.merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True)))


def variant(
    attn: CausalSelfAttention, x: torch.Tensor, scale: float, dim: int = -1, sees_itself: bool = True
):
    """A wrong decode loop, to recognise the mistake behind an answer."""
    outs, ks, vs = [], [], []
    for t in range(x.shape[1]):
        x_t = x[:, t : t + 1]
        q = attn.split_heads(attn.q_proj(x_t))
        k_new, v_new = attn.split_heads(attn.k_proj(x_t)), attn.split_heads(attn.v_proj(x_t))
        if sees_itself:
            ks.append(k_new), vs.append(v_new)
        if not ks:
            outs.append(attn.o_proj(torch.zeros_like(x_t)))
        else:
            k, v = torch.cat(ks, 2), torch.cat(vs, 2)
            p = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=dim)
            outs.append(attn.o_proj(attn.merge_heads(p @ v)))
        if not sees_itself:
            ks.append(k_new), vs.append(v_new)
    return torch.cat(outs, 1)


def decode(
    m: ModuleType, attn: CausalSelfAttention, x: torch.Tensor, cache: KVCache | None = None
) -> torch.Tensor:
    cache = KVCache() if cache is None else cache
    outs = []
    for t in range(x.shape[1]):
        out = m.decode_step(attn, x[:, t : t + 1], cache)
        if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0], 1, D):
            raise Failed(f"step {t}: returned {getattr(out, 'shape', type(out).__name__)}, expected ({x.shape[0]}, 1, {D})",
                         "return o_proj(merge_heads(p @ v)): shape (B, 1, D)")  # fmt: skip
        outs.append(out)
    return torch.cat(outs, 1)


def cache_grows(m: ModuleType) -> None:
    attn, x = layer()
    cache = KVCache()
    with torch.no_grad():
        for t in range(3):
            m.decode_step(attn, x[:, t : t + 1], cache)
            if cache.length != t + 1:
                raise Failed(f"after {t + 1} steps the cache holds {cache.length} tokens")
        want = attn.split_heads(attn.k_proj(x[:, :3]))
    if not torch.allclose(cache.k, want, atol=TOL):
        raise Failed("the cached keys are not split_heads(k_proj(x)) of the tokens seen")


def first_token(m: ModuleType) -> None:
    attn, x = layer()
    with torch.no_grad():
        got = m.decode_step(attn, x[:, :1], KVCache())
        want = attn.o_proj(attn.v_proj(x[:, :1]))
    if not torch.allclose(got, want, atol=TOL):
        raise Failed(f"first token: max |difference| from W_o (W_v x) {(got - want).abs().max():.2e}")


def matches_sdpa(m: ModuleType) -> None:
    attn, x = layer()
    with torch.no_grad():
        got, want = decode(m, attn, x), reference(attn, x)
        if torch.allclose(got, want, atol=TOL):
            return
        mistakes = {
            "scale the scores by 1 / sqrt(d_head) = 1 / sqrt(D / H), not 1 / sqrt(D)": variant(attn, x, 1 / math.sqrt(D)),
            "the scores are not scaled: divide q K^T by sqrt(d_head)": variant(attn, x, 1.0),
            "softmax over the keys (dim=-1), the last axis of (B, H, 1, t)": variant(attn, x, 1 / math.sqrt(D // H), -2),
            "append the new token's k and v BEFORE attending: a token attends to itself": variant(
                attn, x, 1 / math.sqrt(D // H), sees_itself=False),
        }  # fmt: skip
    for hint, out in mistakes.items():
        if torch.allclose(got, out, atol=TOL):
            raise Failed(f"max |difference| from the causal forward {(got - want).abs().max():.2e}", hint)
    raise Failed(f"max |difference| from the causal forward {(got - want).abs().max():.2e}")


def prefilled_cache(m: ModuleType) -> None:
    attn, x = layer()
    cache = KVCache()
    with torch.no_grad():
        decode_all_into(attn, x[:, : T - 1], cache)  # the prompt's keys and values, projected in one pass
        got = m.decode_step(attn, x[:, T - 1 :], cache)
        want = reference(attn, x)[:, -1:]
    if not torch.allclose(got, want, atol=TOL):
        with torch.no_grad():
            from_scratch_ok = torch.allclose(decode(m, attn, x), reference(attn, x), atol=TOL)
        raise Failed(f"after a prefilled cache of {T - 1} tokens: max |difference| {(got - want).abs().max():.2e}",
                     None if from_scratch_ok else "the same mistake as in the token-by-token check above")  # fmt: skip


def batch_rows_apart(m: ModuleType) -> None:
    attn, x = layer()
    with torch.no_grad():
        both, alone = decode(m, attn, x), decode(m, attn, x[1:])
    if not torch.allclose(both[1:], alone, atol=TOL):
        raise Failed(
            f"row 1 decoded with row 0 differs from row 1 alone by {(both[1:] - alone).abs().max():.2e}"
        )


CHECKS = [
    Check("the cache grows by one token a step and holds k_proj(x)", cache_grows,
          "call cache.append(k_new, v_new) once per step with this token's split-head keys and values"),
    Check("the first token's output is W_o (W_v x): a softmax over one key is 1", first_token,
          "the token attends to itself: append its k and v to the cache before computing the scores"),
    Check("decoding token by token equals the causal F.scaled_dot_product_attention", matches_sdpa,
          "scores = q @ k.transpose(-2, -1) / sqrt(d_head); p = softmax(scores, -1); merge_heads(p @ v); o_proj"),
    Check("a step after a prefilled cache equals the full pass's last token", prefilled_cache,
          "read the past keys and values from the cache (whatever filled it), not from state of your own"),
    Check("batch rows do not mix", batch_rows_apart,
          "keep the batch axis apart: (B, H, 1, Dh) @ (B, H, Dh, t), no reshape that merges B with H or t"),
]  # fmt: skip
