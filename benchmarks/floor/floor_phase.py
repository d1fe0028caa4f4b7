"""Load for the floor phase of every `mlsd bench`: the empty /floor route alone, at the system's rate.

The harness runs it before the counted runs with the system's users less the 1-user floor (so the same
number of users send the same requests/s as the system route will get). Its p99 is the noisy-machine guard:
the latency the framework, the loopback and the machine cost with no work at all.
"""

from locust import FastHttpUser, task

from infra.bench.users import system_wait_time

__all__ = ["FloorPhaseUser"]


class FloorPhaseUser(FastHttpUser):
    wait_time = system_wait_time()

    @task
    def floor(self) -> None:
        self.client.get("/floor", name="floor")
