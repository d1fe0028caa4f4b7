"""Reference answer: the project's own CUPED (infra/experiments/stats.py)."""

from infra.experiments.stats import cuped

__all__ = ["cuped"]
