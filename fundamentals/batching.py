"""Dynamic batching in front of an ONNX model: a queue that waits at most `max_wait` for up to `max_batch`
requests, runs them as one batch, and hands each caller its own row — the idea behind Triton's dynamic batcher and
Ray Serve's @serve.batch.

Why it pays: at batch 1 a dense layer is a matrix-vector product that reads every weight once per request
(memory-bound); a batch of B reads the weights once for B requests. Why it costs: a request that arrives alone
waits up to `max_wait` for company. So batching raises the throughput one core sustains and lowers p99 once the
offered load is near or past batch-1 capacity; at low load it only adds latency (up to `max_wait`).

`mlsd fundamentals batching` measures both: open-loop Poisson arrivals (seeded) at offered rates set as multiples
of the measured batch-1 capacity, batch 1 vs batched in the same run, one ONNX Runtime thread.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from infra.steps import OneLineParser

_STOP = object()


class DynamicBatcher:
    """Collects submitted rows into batches of at most `max_batch`, waiting at most `max_wait_s` after the first
    row of a batch; one worker thread runs `run` on each batch, in arrival order."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_s >= 0, got {max_batch}, {max_wait_s}")
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_s
        self.batch_sizes: list[int] = []
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="dynamic-batcher", daemon=True)
        self._worker.start()

    def submit(self, row: np.ndarray) -> Future:
        """Queue one request (a (D,) row); the future resolves to its own output row."""
        future: Future = Future()
        self._queue.put((row, future))
        return future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._worker.join()

    def _collect(self, first: tuple) -> tuple[list[tuple], bool]:
        """The batch that starts with `first`: wait for more until the deadline, then take whatever is queued."""
        batch, deadline = [first], time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            timeout = deadline - time.perf_counter()
            try:
                item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stop = self._collect(first)
            rows = np.stack([row for row, _ in batch])  # (B, D)
            try:
                out = self.run(rows)  # (B, ...)
            except Exception as exc:  # every caller of the batch gets the error, the worker lives on
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.batch_sizes.append(len(batch))
            for (_, future), y in zip(batch, out, strict=True):
                future.set_result(y)


@dataclass(frozen=True)
class LoadResult:
    offered_rps: float
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    mean_batch: float


def poisson_arrivals(rate: float, n: int, seed: int) -> np.ndarray:
    """Arrival times (s from the start) of n requests with exponential gaps at `rate` per second."""
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))


def open_loop(
    batcher: DynamicBatcher, rows: np.ndarray, rate: float, duration_s: float, seed: int
) -> LoadResult:
    """Submit rows at Poisson arrival times regardless of how the server keeps up (open loop: a slow server
    builds a queue, as real traffic does), then wait for every answer."""
    n = max(int(rate * duration_s), 1)
    arrivals = poisson_arrivals(rate, n, seed)
    done = np.zeros(n)
    sizes_before = len(batcher.batch_sizes)
    futures = []
    t0 = time.perf_counter()
    for i, at in enumerate(arrivals):
        delay = t0 + at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        future = batcher.submit(rows[i % len(rows)])
        future.add_done_callback(lambda _f, i=i: done.__setitem__(i, time.perf_counter()))
        futures.append(future)
    for future in futures:
        future.result()
    latency_ms = (done - (t0 + arrivals)) * 1e3
    sizes = batcher.batch_sizes[sizes_before:]
    return LoadResult(
        offered_rps=rate,
        achieved_rps=n / (done.max() - t0),
        p50_ms=float(np.percentile(latency_ms, 50)),
        p99_ms=float(np.percentile(latency_ms, 99)),
        mean_batch=float(np.mean(sizes)),
    )


def make_mlp(d_in: int, width: int, depth: int, seed: int = 0) -> nn.Module:
    """A dense ranker-shaped MLP: d_in -> width x depth -> 1 (weights random: only the latency is measured)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 1)).eval()


def onnx_runner(model: nn.Module, d_in: int, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Export to ONNX (dynamic batch) and return a one-thread ONNX Runtime call."""
    import onnxruntime as ort  # the heavy runtime only when a topic needs it

    path = folder / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, d_in),), str(path), input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False,
        )  # fmt: skip
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x.astype(np.float32)})[0]


def per_call_ms(run: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, batch: int, repeats: int) -> float:
    """Median ms of one model call on `batch` rows."""
    x = rows[:batch]
    run(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals batching", description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2048, help="hidden width of the MLP")
    parser.add_argument("--depth", type=int, default=4, help="hidden layers")
    parser.add_argument("--d-in", type=int, default=512)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--loads", type=float, nargs="+", default=[0.3, 0.8, 1.5, 3.0],
                        help="offered load as multiples of the measured batch-1 capacity")  # fmt: skip
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of traffic per row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console  # the table library only for the printed demo
    from rich.table import Table

    rows = np.random.default_rng(args.seed).standard_normal((4096, args.d_in)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        run = onnx_runner(make_mlp(args.d_in, args.width, args.depth, args.seed), args.d_in, Path(tmp))
        calls = Table(
            title=f"one model call, MLP {args.d_in}-{args.width}x{args.depth}-1, ONNX Runtime, 1 thread"
        )
        for col in ("batch", "ms / call", "ms / row", "rows/s"):
            calls.add_column(col, justify="right")
        for b in (1, 8, args.max_batch):
            ms = per_call_ms(run, rows, b, 200 if b == 1 else 50)
            calls.add_row(str(b), f"{ms:.3f}", f"{ms / b:.4f}", f"{b / ms * 1e3:,.0f}")
        capacity = 1e3 / per_call_ms(run, rows, 1, 200)
        console = Console(width=120)
        console.print(calls)
        table = Table(title=f"open-loop Poisson traffic, {args.duration:g} s per row; batch-1 capacity "
                            f"{capacity:,.0f} req/s (1 / its ms per call)")  # fmt: skip
        for col in ("offered", "req/s", "server", "achieved req/s", "p50 ms", "p99 ms", "mean batch"):
            table.add_column(col, justify="right")
        for load in args.loads:
            rate = load * capacity
            for name, max_batch, wait in (("batch 1", 1, 0.0), (f"batched ≤{args.max_batch}, {args.max_wait_ms:g} ms",
                                                                 args.max_batch, args.max_wait_ms / 1e3)):  # fmt: skip
                batcher = DynamicBatcher(run, max_batch, wait)
                try:
                    r = open_loop(batcher, rows, rate, args.duration, args.seed)
                finally:
                    batcher.close()
                table.add_row(f"{load:g}x", f"{rate:,.0f}", name, f"{r.achieved_rps:,.0f}", f"{r.p50_ms:.2f}",
                              f"{r.p99_ms:.2f}", f"{r.mean_batch:.1f}")  # fmt: skip
        console.print(table)
    console.print("Past batch-1 capacity the batch-1 queue grows for as long as the traffic lasts (its p99 is "
                  "then set by --duration); the batcher keeps up by batching more. Timings from a shared CPU.")  # fmt: skip
    return 0
