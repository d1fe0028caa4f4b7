"""Exercise: the population stability index (PSI) between a reference sample and a live one.

Cut the feature into n_bins bins at the REFERENCE's quantiles (so each bin holds ~1/n_bins of the reference; the
first and last bins are open-ended), take each sample's share of rows per bin, clip the shares at eps, and sum
(live% - ref%) * ln(live% / ref%). Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.

Check your answer: `mlsd exercise check psi`.
"""

from __future__ import annotations

import numpy as np


def psi(reference: np.ndarray, live: np.ndarray, n_bins: int = 10, eps: float = 1e-4) -> float:
    """reference (n,), live (m,) values of one feature -> PSI >= 0."""
    raise NotImplementedError
