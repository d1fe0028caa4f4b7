"""Locust users shared by every locustfile: the floor user, and the rate each user is given.

The harness passes the target rates through the environment; a locustfile imports FloorUser
(locust picks up every User class in the module) and paces its own user with `system_wait_time()`.
"""

from __future__ import annotations

from locust import FastHttpUser, constant_throughput, task

from infra.bench.settings import BenchSettings

BENCH = BenchSettings()


def system_wait_time():  # noqa: ANN201 — locust's wait-time callable
    """constant_throughput so that (users - 1) system users together send MLSD_BENCH_RATE requests/s."""
    return constant_throughput(BENCH.rate / max(1, BENCH.users - 1))


class FloorUser(FastHttpUser):
    """One user on the empty /floor route: the latency the stack costs with no work at all."""

    fixed_count = 1
    wait_time = constant_throughput(BENCH.floor_rate)

    @task
    def floor(self) -> None:
        self.client.get("/floor", name="floor")
