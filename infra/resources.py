"""What a step cost this process: its peak resident memory, as the step's own report prints it."""

from __future__ import annotations

import resource


def peak_rss_gb() -> float:
    """This process's peak resident memory in GB since it started (Linux ru_maxrss is KiB); the figure the
    out-of-core steps' `peak RSS` line and benchmarks/recsys/offline_scale.py report."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
