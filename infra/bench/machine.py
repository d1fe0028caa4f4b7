"""What the bench knows about the machine: which CPUs the server and locust get, and CPU seconds from /proc.

On a 2-core machine a server and a load generator that share both cores fight for them: locust's own CPU shows
up as server latency, and a BLAS or OpenMP pool sized to "all cores" fights both. `plan_layout` gives the
server and locust disjoint CPUs (on 2 cores: one each) and caps the server's thread pools to its share, so a
number measures the server, not the neighbour. `cpu_seconds` reads utime + stime of a process (all its
threads), which is how the report tells "the server was slow" from "the load generator starved".
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these

# Thread pools a server may start, each sized to the CPU count unless told: OpenMP (FAISS, torch intra-op),
# MKL and OpenBLAS (numpy, torch), numexpr, Accelerate, and Rayon (the HF tokenizers' pool). ONNX Runtime
# sessions get their thread count in code (infra.serving.onnx.make_session, threads=1); the affinity bounds
# them anyway.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "RAYON_NUM_THREADS",
)


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (a container or `taskset` may give fewer than os.cpu_count())."""
    return tuple(sorted(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class CpuLayout:
    """Where the server and locust run, and the thread caps the server gets."""

    pinned: bool
    available: tuple[int, ...]
    server_cpus: tuple[int, ...]
    locust_cpus: tuple[int, ...]
    note: str  # one line for the report: what was done and why
    thread_vars: tuple[str, ...] = field(default=THREAD_VARS)

    @property
    def server_cores(self) -> int:
        """The cores the server may use: the denominator of per-core throughput."""
        return len(self.server_cpus)

    def server_env(self) -> dict[str, str]:
        """Thread caps for the server: its share of cores (nothing when not pinned: the old behaviour)."""
        return {var: str(self.server_cores) for var in self.thread_vars} if self.pinned else {}

    def locust_env(self) -> dict[str, str]:
        """locust is one process on one event loop: its numpy (recsys's Zipf draws) needs one thread."""
        return {var: "1" for var in self.thread_vars} if self.pinned else {}

    def as_dict(self) -> dict[str, object]:
        return {
            "pinned": self.pinned,
            "cpus_available": list(self.available),
            "server_cpus": list(self.server_cpus),
            "locust_cpus": list(self.locust_cpus),
            "server_cores": self.server_cores,
            "thread_caps": self.server_env(),
            "note": self.note,
        }


def plan_layout(
    available: Sequence[int],
    pin: bool = True,
    server_cpus: int | None = None,
    thread_vars: Iterable[str] = (),
) -> CpuLayout:
    """Disjoint CPUs for the server (the last `server_cpus`, default half, at least one) and locust (the rest).

    `thread_vars` adds the variables a system reads as its own thread count (BenchSpec.thread_env)."""
    cpus = tuple(sorted(available))
    names = THREAD_VARS + tuple(v for v in thread_vars if v not in THREAD_VARS)
    if not pin:
        note = f"not pinned (--no-pin): server and locust share CPUs {_span(cpus)}; no thread caps"
        return CpuLayout(False, cpus, cpus, cpus, note, names)
    if len(cpus) < 2:
        note = f"not pinned: only CPU {_span(cpus)} is available; server and locust share it"
        return CpuLayout(False, cpus, cpus, cpus, note, names)
    n_server = server_cpus or max(1, len(cpus) // 2)
    if not 1 <= n_server < len(cpus):
        raise ValueError(
            f"--server-cpus {n_server} leaves no CPU for locust: {len(cpus)} available ({_span(cpus)}); "
            f"give at most {len(cpus) - 1}"
        )
    server, locust = cpus[-n_server:], cpus[:-n_server]
    note = (
        f"pinned: server on CPU {_span(server)}, locust on CPU {_span(locust)}; "
        f"server thread pools capped at {n_server}"
    )
    return CpuLayout(True, cpus, server, locust, note, names)


def pin_to(cpus: Sequence[int] | None) -> Callable[[], None] | None:
    """A Popen preexec_fn that pins the child (and every thread it starts) to `cpus`; None leaves it free."""
    if not cpus:
        return None
    chosen = set(cpus)
    return lambda: os.sched_setaffinity(0, chosen)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, in seconds (NaN where /proc cannot tell).

    Reads /proc/<pid>/stat, which still holds the totals while the process is a zombie that has not been
    reaped: read it after it exits and before `wait()` to count its whole life."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text[text.rindex(")") + 2 :].split()  # the command name in (...) may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5): utime, stime


def affinity_of(pid: int) -> list[int]:
    """The CPUs a running process may use, as the kernel sees them (the report shows what pinning did)."""
    try:
        return sorted(os.sched_getaffinity(pid))
    except OSError:
        return []


def _span(cpus: Sequence[int]) -> str:
    if not cpus:
        return "none"
    if list(cpus) == list(range(cpus[0], cpus[-1] + 1)) and len(cpus) > 2:
        return f"{cpus[0]}-{cpus[-1]}"
    return ",".join(str(c) for c in cpus)
