"""`mlsd fundamentals <topic> [flags]` — the short, sharp questions of an MLE loop, each with evidence.

Topic modules are imported lazily so `mlsd fundamentals softmax` does not pay for transformers or peft.
"""

from __future__ import annotations

import importlib
import sys

from infra.steps import did_you_mean

# kebab-case topic -> (module under fundamentals/, the question it answers)
TOPICS: dict[str, tuple[str, str]] = {
    "softmax": (
        "softmax",
        "Why does a naive softmax overflow, and how do max-subtraction and log-sum-exp fix it?",
    ),
    "kmeans": ("kmeans", "Write vectorised k-means with k-means++ init; how does it compare to sklearn?"),
    "vectorise": ("vectorise", "Make this slow pandas per-user loop fast; prove the outputs are identical."),
    "attention": ("attention", "Walk one output token through multi-head attention, with a KV cache."),
    "adapters": ("adapters", "Full fine-tune vs LoRA vs prompt-tuning: parameters, memory, time, accuracy?"),
    "batchnorm": ("batchnorm", "Why does batch norm break at inference (batch size 1, shifted batches)?"),
    "gpu-mem": ("gpu_memory", "How much GPU memory does training / serving this model need?"),
    "quantization": (
        "quantization",
        "What does int8 quantization buy in size, latency and accuracy, and when is it slower?",
    ),
    "batching": (
        "batching",
        "Dynamic batching in front of a model: when does it raise throughput, and when does it only add latency?",
    ),
    "llm-serving": (
        "llm_serving",
        "Static vs continuous batching for an LLM, how many sequences the KV cache holds, tokens/s by batch?",
    ),
    "int4": (
        "int4",
        "Group-wise int4 (round-to-nearest) of a real model's weights: size, error, quality, beside int8?",
    ),
    "distributed": (
        "distributed",
        "Does DDP give the same weights as one process? What does all-reduce cost?",
    ),
}


def print_topics() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mlsd fundamentals <topic> [--help]")
    table.add_column("topic")
    table.add_column("question")
    for name, (_, question) in TOPICS.items():
        table.add_row(name, question)
    Console().print(table)


def main(argv: list[str]) -> int:
    """Dispatch `mlsd fundamentals <topic> [flags]` to fundamentals.<module>.demo(flags)."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print_topics()
        return 0
    topic, rest = argv[0], argv[1:]
    if topic not in TOPICS:
        hint = did_you_mean(topic, list(TOPICS))
        sys.stderr.write(f"mlsd fundamentals: unknown topic '{topic}'{hint}; topics: {', '.join(TOPICS)}\n")
        return 2
    module = importlib.import_module(f"fundamentals.{TOPICS[topic][0]}")
    return int(module.demo(rest) or 0)
