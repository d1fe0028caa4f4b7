"""Exercise: k-means++ initialisation in NumPy.

Pick k starting centers among the points: the first uniformly at random, each next one with probability
proportional to D(x)^2, the squared distance from x to the nearest center chosen so far. Far points are likely,
chosen points (D = 0) are never picked twice. Every random draw comes from `rng`, so a seed gives the same centers.

Check your answer: `mlsd exercise check kmeans-pp`.
"""

from __future__ import annotations

import numpy as np


def kmeans_plusplus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """X (n, d) -> centers (k, d), each a row of X."""
    raise NotImplementedError
