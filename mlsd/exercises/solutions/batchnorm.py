"""Reference answer: torch's own layer (fundamentals/batchnorm.py shows what goes wrong around it)."""

from torch.nn import BatchNorm1d

__all__ = ["BatchNorm1d"]
