"""Back-of-envelope serving math for a hosted LLM generator (vLLM on one GPU): KV-cache memory per request,
concurrent sequences that fit, decode throughput bound, and $ per 1k answers. Arithmetic, not a measurement:
`mlsd rag cost` prints it with the assumptions as flags."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LlmShape:
    name: str = "Llama-3.1-8B-Instruct"
    params_b: float = 8.0
    layers: int = 32
    kv_heads: int = 8  # grouped-query attention
    head_dim: int = 128
    bytes_per_value: int = 2  # fp16/bf16 weights and KV cache


@dataclass
class GpuShape:
    name: str = "H100 80GB"
    memory_gb: float = 80.0
    bandwidth_tb_s: float = 3.35
    usable_fraction: float = 0.9  # vLLM gpu_memory_utilization
    dollars_per_hour: float = 2.5


def serving_math(
    llm: LlmShape, gpu: GpuShape, prompt_tokens: int, answer_tokens: int, batch: int
) -> dict[str, float]:
    kv_per_token = 2 * llm.layers * llm.kv_heads * llm.head_dim * llm.bytes_per_value  # K and V, every layer
    tokens = prompt_tokens + answer_tokens
    kv_per_request = kv_per_token * tokens
    weights = llm.params_b * 1e9 * llm.bytes_per_value
    kv_budget = gpu.memory_gb * 1e9 * gpu.usable_fraction - weights
    max_seqs = kv_budget / kv_per_request
    # decode is memory-bound: each step reads the weights once plus the batch's KV cache
    step_s = (weights + batch * kv_per_request) / (gpu.bandwidth_tb_s * 1e12)
    decode_tok_s = batch / step_s
    answers_per_s = decode_tok_s / answer_tokens
    return {
        "kv_kib_per_token": kv_per_token / 1024,
        "kv_mib_per_request": kv_per_request / 2**20,
        "weights_gb": weights / 1e9,
        "max_concurrent_sequences": max_seqs,
        "decode_step_ms": step_s * 1000,
        "decode_tokens_per_s": decode_tok_s,
        "answers_per_s_decode_bound": answers_per_s,
        "dollars_per_1k_answers": gpu.dollars_per_hour / 3600 / answers_per_s * 1000,
    }
