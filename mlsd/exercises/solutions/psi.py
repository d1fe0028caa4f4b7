"""Reference answer: the project's own PSI (infra/monitoring/drift.py)."""

from infra.monitoring import psi

__all__ = ["psi"]
