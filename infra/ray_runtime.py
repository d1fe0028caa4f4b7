"""Ray for the offline pipeline: one `init_ray()` for a laptop and for a cluster, the same code after it.

    init_ray()                        # MLSD_RAY_ADDRESS unset: a local Ray, MLSD_RAY_CPUS CPUs,
                                      # MLSD_RAY_OBJECT_STORE_MB of object store, no dashboard
    ds = ray.data.from_pandas(df).map_batches(fn, batch_format="pandas")
    shutdown_ray()

With MLSD_RAY_ADDRESS set (e.g. `ray://head:10001`, or `auto` on a node of the cluster) the same calls run on
that cluster and the local budget is not used: the cluster's own resources decide. The local budget is
bounded on purpose: left alone, Ray takes every core and 30% of memory for its object store, which on a
2-core, 24 GB machine starves the serving processes and the tests running beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray
import ray.data

from infra.config import get_settings

MB = 1024 * 1024


@dataclass(frozen=True)
class RayRuntime:
    """What init_ray connected to: local or an address, and the resources Ray reports."""

    local: bool
    address: str
    cpus: float
    object_store_mb: float


def _runtime(local: bool) -> RayRuntime:
    resources = ray.cluster_resources()
    return RayRuntime(
        local=local,
        address=ray.get_runtime_context().gcs_address,
        cpus=resources.get("CPU", 0.0),
        object_store_mb=resources.get("object_store_memory", 0.0) / MB,
    )


def _quiet_ray_data_console() -> None:
    """Ray Data logs every dataset's plan and progress at INFO to the console; keep warnings only there.

    Only Ray's own console handler is touched: its full log still goes to the session's ray-data.log, and
    handlers others attached to the logger (pytest's capture handlers, for one) keep their levels.
    """
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and type(handler).__module__.startswith("ray."):
            handler.setLevel(logging.WARNING)


def init_ray(
    num_cpus: int | None = None, object_store_mb: int | None = None, address: str | None = None
) -> RayRuntime:
    """Start a bounded local Ray, or connect to MLSD_RAY_ADDRESS; a second call returns the running one.

    Arguments override the settings (MLSD_RAY_CPUS, MLSD_RAY_OBJECT_STORE_MB, MLSD_RAY_ADDRESS).
    """
    settings = get_settings()
    address = address or settings.ray_address
    _quiet_ray_data_console()
    if ray.is_initialized():
        return _runtime(local=not address)
    # Quiet: warnings only, and workers' stdout stays in Ray's log files instead of interleaving with ours.
    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        ray.init(address=address, **quiet)
        return _runtime(local=False)
    ray.init(
        num_cpus=num_cpus or settings.ray_cpus,
        object_store_memory=(object_store_mb or settings.ray_object_store_mb) * MB,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",  # a local Ray talks over loopback only, never the machine's own address
        **quiet,
    )
    return _runtime(local=True)


def shutdown_ray() -> None:
    """Stop the local Ray (its raylet, GCS and workers) or disconnect from the cluster."""
    ray.shutdown()
