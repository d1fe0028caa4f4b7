"""Deterministic assignment: hash(unit, salt) -> bucket, layers of non-overlapping experiments.

The same unit always lands in the same bucket for a salt (no state to store, any server agrees);
different salts are independent, so experiments in different layers overlap orthogonally while
experiments in the same layer share its buckets without overlapping.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

N_BUCKETS = 10_000


def bucket(unit: str | int, salt: str, n_buckets: int = N_BUCKETS) -> int:
    """sha256(salt:unit) -> 0..n_buckets-1: stable across processes, machines and languages."""
    digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n_buckets


def buckets(units: np.ndarray, salt: str, n_buckets: int = N_BUCKETS) -> np.ndarray:
    """Vectorised bucketing of integer unit ids (splitmix64 of id ^ hash(salt)); for simulations."""
    salt_key = np.uint64(int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "big"))
    x = np.asarray(units).astype(np.uint64) ^ salt_key
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_buckets)).astype(np.int64)


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[str, ...] = ("control", "treatment")
    weights: tuple[float, ...] = (0.5, 0.5)
    traffic: float = 1.0  # share of the layer's buckets this experiment takes


@dataclass
class Layer:
    """Experiments that must not overlap share one layer (one salt); each takes a slice of its buckets."""

    name: str
    experiments: list[Experiment] = field(default_factory=list)

    def add(self, experiment: Experiment) -> Layer:
        used = sum(e.traffic for e in self.experiments)
        if used + experiment.traffic > 1.0 + 1e-9:
            raise ValueError(
                f"layer {self.name} has {1 - used:.0%} traffic left, {experiment.name} asks {experiment.traffic:.0%}"
            )
        if abs(sum(experiment.weights) - 1.0) > 1e-9 or len(experiment.weights) != len(experiment.arms):
            raise ValueError(f"{experiment.name}: one weight per arm, summing to 1")
        self.experiments.append(experiment)
        return self

    def assign(self, unit: str | int) -> tuple[str, str] | None:
        """(experiment, arm) for a unit, or None when it falls in the layer's unused traffic."""
        b = bucket(unit, self.name) / N_BUCKETS
        start = 0.0
        for e in self.experiments:
            if b < start + e.traffic:
                # the arm comes from a second, experiment-salted hash: arms stay balanced within the slice
                u = bucket(unit, f"{self.name}/{e.name}") / N_BUCKETS
                edges = np.cumsum(e.weights)
                return e.name, e.arms[int(np.searchsorted(edges, u, side="right"))]
            start += e.traffic
        return None
