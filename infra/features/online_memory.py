"""What one entity costs in the online store: Redis's own MEMORY USAGE, averaged over a sample of keys.

Feast keeps one Redis hash per entity (the serialized entity key followed by the project name), holding every
online feature view of that entity, so bytes per key is bytes per user (or per card, per video). Multiplied
by the entity count it gives the memory line of a capacity estimate from a measurement, not a constant.
"""

from __future__ import annotations

from itertools import islice

import redis


def bytes_per_key(
    client: redis.Redis | redis.RedisCluster, pattern: str | bytes, sample: int = 1000
) -> float:
    """Mean MEMORY USAGE (bytes) of up to `sample` keys matching `pattern`; single Redis or Redis Cluster.

    MEMORY USAGE counts the key, its value and the per-key bookkeeping (dict entry, object header), with
    SAMPLES 0 so every field of a hash is counted rather than estimated from five. It does not count what is
    shared by all keys (allocator fragmentation, replication and AOF buffers, a cluster's slot bookkeeping), so
    a capacity line adds headroom for those. A cluster client scans its masters in turn, so the sample spans them.
    """
    if sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    keys = list(islice(client.scan_iter(match=pattern, count=max(sample, 100)), sample))
    if not keys:
        raise ValueError(f"no key matches {pattern!r}: materialize the feature views first")
    sizes: list[int | None] = [client.memory_usage(key, samples=0) for key in keys]  # type: ignore[misc]
    return sum(s for s in sizes if s is not None) / len(keys)
