"""Reference answer: the project's own vectorised version (fundamentals/vectorise.py)."""

from fundamentals.vectorise import features_vectorised

__all__ = ["features_vectorised"]
