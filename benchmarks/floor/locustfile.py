"""Load for `mlsd bench floor`: the demo route beside the empty floor route."""

from locust import FastHttpUser, task

from infra.bench.users import FloorUser, system_wait_time

__all__ = ["FloorUser", "DemoUser"]


class DemoUser(FastHttpUser):
    wait_time = system_wait_time()

    @task
    def demo(self) -> None:
        self.client.post("/demo", json={"n": 64}, name="demo")
