"""CPU layout for the bench (disjoint CPUs, thread caps) and CPU seconds from /proc, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from infra.bench.machine import THREAD_VARS, affinity_of, cpu_seconds, pin_to, plan_layout

BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_two_cores_give_one_to_the_server_and_one_to_locust() -> None:
    layout = plan_layout([0, 1])
    assert layout.pinned and layout.server_cpus == (1,) and layout.locust_cpus == (0,)
    assert layout.server_cores == 1
    assert layout.server_env() == {var: "1" for var in THREAD_VARS}
    assert layout.server_env()["OMP_NUM_THREADS"] == "1" and "MKL_NUM_THREADS" in layout.server_env()
    assert "server on CPU 1, locust on CPU 0" in layout.note


def test_more_cores_split_in_half_or_as_asked_and_caps_follow_the_share() -> None:
    layout = plan_layout(range(8))
    assert layout.server_cpus == (4, 5, 6, 7) and layout.locust_cpus == (0, 1, 2, 3)
    assert layout.server_env()["OPENBLAS_NUM_THREADS"] == "4"
    three = plan_layout(range(8), server_cpus=3, thread_vars=("MLSD_RAG_THREADS",))
    assert three.server_cpus == (5, 6, 7) and three.server_env()["MLSD_RAG_THREADS"] == "3"
    assert set(three.server_cpus).isdisjoint(three.locust_cpus)
    with pytest.raises(ValueError, match="leaves no CPU for locust"):
        plan_layout([0, 1], server_cpus=2)


def test_no_pin_or_one_cpu_runs_unpinned_without_caps() -> None:
    off = plan_layout([0, 1], pin=False)
    assert not off.pinned and off.server_cpus == off.locust_cpus == (0, 1) and off.server_env() == {}
    assert "--no-pin" in off.note
    one = plan_layout([3])
    assert not one.pinned and one.server_cores == 1 and "only CPU 3" in one.note


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to pin a child to one of them")
def test_pin_to_pins_the_child_process() -> None:
    cpu = max(os.sched_getaffinity(0))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"], preexec_fn=pin_to([cpu]))
    try:
        assert affinity_of(child.pid) == [cpu]
    finally:
        child.kill()
        child.wait()
    assert pin_to(None) is None and pin_to(()) is None


def test_cpu_seconds_counts_a_busy_child_even_after_it_exits_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", BUSY.format(s=0.5)])
    while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        time.sleep(0.05)
    spent = cpu_seconds(child.pid)  # a zombie still shows its totals
    child.wait()
    assert spent >= 0.5
    assert cpu_seconds(child.pid) != cpu_seconds(child.pid)  # reaped: NaN, not an error


def test_cpu_seconds_of_this_process_grows_with_work() -> None:
    before = cpu_seconds(os.getpid())
    exec(BUSY.format(s=0.2))
    assert cpu_seconds(os.getpid()) - before >= 0.15  # clock ticks are 10 ms
