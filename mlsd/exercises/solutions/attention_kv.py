"""Reference answer: the project's own decode step (fundamentals/attention.py)."""

from fundamentals.attention import decode_step

__all__ = ["decode_step"]
