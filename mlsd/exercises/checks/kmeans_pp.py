"""Checks for k-means++: the centers are data points, never repeated, seeded by `rng`, and the second center
is drawn with exactly the D(x)^2 probabilities (measured over many seeds on three points)."""

from __future__ import annotations

from collections import Counter
from types import ModuleType

import numpy as np

from mlsd.exercises.harness import Check, Failed

NAMES = ("kmeans_plusplus",)

# Three points on a line at 0, 3 and 4: with k = 2 the pair {3, 4} is drawn with probability
# (P(first = 3) * 1/10 + P(first = 4) * 1/17) = (0.1 + 1/17) / 3 under D^2, (1/4 + 1/5) / 3 under D, 1/3 uniformly
# and 0 when the farthest point is taken.
LINE = np.array([[0.0], [3.0], [4.0]])
P_NEAR_PAIR = {"D^2": (0.1 + 1 / 17) / 3, "D": (0.25 + 0.2) / 3, "uniform": 1 / 3, "farthest": 0.0}
DRAWS = 3000


def blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((60, 2)) + np.repeat(rng.uniform(-8, 8, (3, 2)), 20, axis=0)


def centers_are_points(m: ModuleType) -> None:
    X = blobs()
    c = np.asarray(m.kmeans_plusplus(X, 4, np.random.default_rng(1)))
    if c.shape != (4, 2):
        raise Failed(f"shape {c.shape} for k=4 on X (60, 2); expected (4, 2)")
    off = [i for i, row in enumerate(c) if not (np.abs(X - row).max(axis=1) == 0).any()]
    if off:
        raise Failed(f"centers {off} are not rows of X")


def never_repeats(m: ModuleType) -> None:
    for seed in range(200):
        c = np.asarray(m.kmeans_plusplus(LINE, 3, np.random.default_rng(seed)))
        if len({float(v) for v in c[:, 0]}) < 3:
            raise Failed(f"k = n = 3 distinct points, seed {seed}: centers {c[:, 0].tolist()}")


def seeded_by_rng(m: ModuleType) -> None:
    X = blobs()
    a = np.asarray(m.kmeans_plusplus(X, 3, np.random.default_rng(7)))
    b = np.asarray(m.kmeans_plusplus(X, 3, np.random.default_rng(7)))
    if not np.array_equal(a, b):
        raise Failed("two calls with np.random.default_rng(7) gave different centers")
    firsts = {tuple(np.asarray(m.kmeans_plusplus(X, 1, np.random.default_rng(s)))[0]) for s in range(30)}
    if len(firsts) < 5:
        raise Failed(f"30 seeds gave only {len(firsts)} different first centers; the first should be uniform")


def d_squared_sampling(m: ModuleType) -> None:
    pairs = Counter()
    for seed in range(DRAWS):
        c = np.asarray(m.kmeans_plusplus(LINE, 2, np.random.default_rng(seed)))
        pairs[frozenset(float(v) for v in c[:, 0])] += 1
    seen = pairs[frozenset({3.0, 4.0})] / DRAWS
    want = P_NEAR_PAIR["D^2"]
    if abs(seen - want) <= 0.02:
        return
    closest = min(P_NEAR_PAIR, key=lambda rule: abs(P_NEAR_PAIR[rule] - seen))
    hints = {
        "D": "the next center is drawn with probability proportional to D(x), not D(x)^2: square the distance",
        "uniform": "the next center is drawn uniformly: weight each point by D(x)^2 (rng.choice(n, p=d2 / d2.sum()))",
        "farthest": "the next center is the farthest point (argmax): k-means++ SAMPLES it with probability ∝ D(x)^2",
    }
    raise Failed(f"points 0, 3, 4, k=2: the pair {{3, 4}} in {seen:.3f} of {DRAWS} seeds, expected {want:.3f} "
                 f"(the rule looks like {closest})", hints.get(closest))  # fmt: skip


CHECKS = [
    Check("the centers are k rows of X, shape (k, d)", centers_are_points,
          "k-means++ picks centers among the data points: return X[chosen], shape (k, d)"),
    Check("a chosen point is never chosen again", never_repeats,
          "D(x) is the distance to the NEAREST center chosen so far (keep a running minimum over all chosen "
          "centers, not the first or the last one), so a chosen point has D = 0"),
    Check("the same rng seed gives the same centers; the first center is uniform", seeded_by_rng,
          "draw every random number from the `rng` argument (rng.integers, rng.choice), not np.random.*"),
    Check("each next center is drawn with probability D(x)^2 / sum D^2", d_squared_sampling,
          "weight each point by its squared distance to the nearest chosen center"),
]  # fmt: skip
