"""Exercise: a numerically stable softmax and log-sum-exp in NumPy.

softmax(x)_i = exp(x_i) / sum_j exp(x_j), along `axis`. In float32, exp overflows to inf above ~88.72 and
underflows to 0 below ~-103.97: the formula as written returns nan for logits of +89 or -1000. Make both
functions exact for ordinary logits and finite for any finite input.

Check your answer: `mlsd exercise check softmax`.
"""

from __future__ import annotations

import numpy as np


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities along `axis`: same shape and dtype as x, each slice along `axis` sums to 1."""
    raise NotImplementedError


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(sum(exp(x))) along `axis`, with that axis removed: x (4, 8), axis=-1 -> (4,)."""
    raise NotImplementedError
