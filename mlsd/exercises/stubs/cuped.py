"""Exercise: CUPED variance reduction for an A/B-test metric (Deng et al. 2013).

y is each unit's metric in the experiment, x the same unit's pre-period covariate (before any treatment, so it
is independent of the arm). Return y - theta (x - mean(x)) with theta = cov(x, y) / var(x), estimated on both
arms pooled: the mean (and so the treatment effect) is unchanged, the variance falls by the factor 1 - rho^2,
rho = corr(x, y).

Check your answer: `mlsd exercise check cuped`.
"""

from __future__ import annotations

import numpy as np


def cuped(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y (n,), x (n,) -> the adjusted metric, (n,)."""
    raise NotImplementedError
