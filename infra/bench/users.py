"""Locust users shared by every locustfile: the floor user, and the rate each user is given.

The harness passes the target rates through the environment; a locustfile imports FloorUser
(locust picks up every User class in the module) and paces its own user with `system_wait_time()`.
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant_throughput, task


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def system_wait_time():  # noqa: ANN201 — locust's wait-time callable
    """constant_throughput so that (users - 1) system users together send MLSD_BENCH_RATE requests/s."""
    users = max(1, int(_env_float("MLSD_BENCH_USERS", 4)) - 1)
    return constant_throughput(_env_float("MLSD_BENCH_RATE", 100.0) / users)


class FloorUser(FastHttpUser):
    """One user on the empty /floor route: the latency the stack costs with no work at all."""

    fixed_count = 1
    wait_time = constant_throughput(_env_float("MLSD_BENCH_FLOOR_RATE", 20.0))

    @task
    def floor(self) -> None:
        self.client.get("/floor", name="floor")
