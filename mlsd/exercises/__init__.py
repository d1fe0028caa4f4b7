"""Exercises: a coding-round task as a stub to fill in, and the checks that guard the project's own answer.

`mlsd exercise start <topic>` copies stubs/<module>.py (signatures, docstrings, shape comments, bodies that raise
NotImplementedError) into a folder outside the package; `mlsd exercise check <topic>` imports the candidate's
file and runs checks/<module>.py against it: properties of the right answer, each with the hint for the mistake
that breaks it. solutions/<module>.py is the reference answer, built from the project's own implementation; the
tests (tests/mlsd/test_exercises.py) check that it passes, that the stub fails, and that each planted bug is
caught by the hint meant for it.

This module stays light (no torch): `mlsd` imports it for every command, the checks only when one runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    module: str  # the file name under stubs/, checks/ and solutions/ (and the candidate's file)
    task: str  # what the candidate writes
    original: str  # the project's own implementation the reference solution reuses


TOPICS: dict[str, Topic] = {
    "softmax": Topic("softmax", "stable softmax and log-sum-exp (NumPy)", "fundamentals/softmax.py"),
    "kmeans-pp": Topic("kmeans_pp", "k-means++ initialisation (NumPy)", "fundamentals/kmeans.py"),
    "vectorise": Topic(
        "vectorise",
        "a per-user pandas loop vectorised: sessions and a 1-hour count",
        "fundamentals/vectorise.py",
    ),
    "attention-kv": Topic(
        "attention_kv", "one decode step of multi-head attention with a KV cache", "fundamentals/attention.py"
    ),
    "lora": Topic("lora", "a LoRA linear layer: init and forward", "fundamentals/adapters.py"),
    "batchnorm": Topic(
        "batchnorm",
        "batch norm in train and eval mode, with running statistics",
        "torch.nn.BatchNorm1d (fundamentals/batchnorm.py shows why it matters)",
    ),  # fmt: skip
    "two-tower-loss": Topic(
        "two_tower_loss",
        "the two-tower in-batch softmax loss with logQ correction",
        "systems/recsys_two_tower/model.py",
    ),
    "psi": Topic(
        "psi", "the population stability index on reference-quantile bins", "infra/monitoring/drift.py"
    ),
    "ranking-metrics": Topic(
        "ranking_metrics", "recall@k and nDCG@k (binary relevance)", "infra/metrics/ranking.py"
    ),
    "cuped": Topic("cuped", "CUPED variance reduction for an A/B metric", "infra/experiments/stats.py"),
    "velocity": Topic(
        "velocity",
        "a sliding-window velocity count, in batch and online",
        "systems/fraud_edge/features/velocity.py",
    ),
}
