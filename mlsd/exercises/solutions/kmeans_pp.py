"""Reference answer: the project's own k-means++ (fundamentals/kmeans.py)."""

from fundamentals.kmeans import kmeans_plusplus

__all__ = ["kmeans_plusplus"]
