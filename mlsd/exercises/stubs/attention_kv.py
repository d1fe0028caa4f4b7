"""Exercise: one decode step of multi-head causal self-attention, with a KV cache.

For the new token x_t: q = x_t W_q; its own k and v join the cache; per head, scores = q K^T / sqrt(d_head) over
every cached key (no mask: the cache holds no future token), p = softmax(scores), head = p V; concatenate the
heads and apply W_o. Fed one token at a time, the outputs must equal the full causal forward pass.

`attn` (fundamentals/attention.py) has q_proj, k_proj, v_proj, o_proj (nn.Linear D -> D), n_heads, d_head,
split_heads ((B, T, D) -> (B, H, T, Dh)) and merge_heads ((B, H, T, Dh) -> (B, T, D)).
`cache.append(k, v)` adds (B, H, 1, Dh) keys and values and returns all of them, (B, H, t, Dh) each.

Check your answer: `mlsd exercise check attention-kv`.
"""

from __future__ import annotations

import torch

from fundamentals.attention import CausalSelfAttention, KVCache


def decode_step(attn: CausalSelfAttention, x_t: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """x_t (B, 1, D) -> the attention output for that token, (B, 1, D); appends its k and v to `cache`."""
    # q: (B, H, 1, Dh); k, v after the append: (B, H, t, Dh); scores: (B, H, 1, t)
    raise NotImplementedError
