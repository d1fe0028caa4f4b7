"""The dynamic batcher: every caller gets its own row back, batches never exceed max_batch, what queued while the
model ran goes out as one batch, a lone request is not held past max_wait, and an error reaches every caller of
its batch without killing the worker. Correctness only: the timing table is `mlsd fundamentals batching`."""

import threading

import numpy as np
import pytest
import torch

from fundamentals.batching import DynamicBatcher, demo, make_mlp, open_loop, poisson_arrivals


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


def test_each_caller_gets_its_own_row_from_concurrent_submitters():
    batcher = DynamicBatcher(double, max_batch=8, max_wait_s=0.002)
    rows = np.arange(400, dtype=np.float32).reshape(200, 2)
    futures: dict[int, object] = {}

    def submit(start: int) -> None:
        for i in range(start, 200, 4):
            futures[i] = batcher.submit(rows[i])

    threads = [threading.Thread(target=submit, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        for i, future in futures.items():
            np.testing.assert_array_equal(future.result(timeout=5), rows[i] * 2)
    finally:
        batcher.close()
    assert sum(batcher.batch_sizes) == 200 and max(batcher.batch_sizes) <= 8


def test_rows_queued_while_the_model_runs_leave_as_one_batch_capped_at_max_batch():
    inside, release = threading.Event(), threading.Event()

    def slow_first(x: np.ndarray) -> np.ndarray:
        if not inside.is_set():
            inside.set()
            release.wait(5)
        return x

    batcher = DynamicBatcher(slow_first, max_batch=8, max_wait_s=0.0)
    first = batcher.submit(np.zeros(1))
    assert inside.wait(5)
    rest = [batcher.submit(np.full(1, i)) for i in range(1, 10)]
    release.set()
    outputs = [f.result(timeout=5) for f in [first, *rest]]
    batcher.close()
    assert batcher.batch_sizes == [1, 8, 1]
    assert [float(o[0]) for o in outputs] == list(range(10))


def test_a_lone_request_is_not_held_past_max_wait():
    batcher = DynamicBatcher(double, max_batch=32, max_wait_s=0.05)
    assert float(batcher.submit(np.ones(1)).result(timeout=2)[0]) == 2.0
    batcher.close()
    assert batcher.batch_sizes == [1]


def test_batch_1_never_batches():
    batcher = DynamicBatcher(double, max_batch=1, max_wait_s=0.01)
    futures = [batcher.submit(np.ones(1)) for _ in range(20)]
    [f.result(timeout=5) for f in futures]
    batcher.close()
    assert batcher.batch_sizes == [1] * 20


def test_an_error_reaches_every_caller_of_its_batch_and_the_worker_lives_on():
    calls = []

    def fails_once(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("model failed")
        return x

    batcher = DynamicBatcher(fails_once, max_batch=4, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.submit(np.ones(1)).result(timeout=5)
    assert float(batcher.submit(np.ones(1)).result(timeout=5)[0]) == 1.0
    batcher.close()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(double, max_batch=0, max_wait_s=0.0)


def test_poisson_arrivals_have_the_asked_rate_and_are_seeded():
    a = poisson_arrivals(1000.0, 20_000, seed=3)
    assert np.all(np.diff(a) > 0)
    assert 20_000 / a[-1] == pytest.approx(1000.0, rel=0.03)
    np.testing.assert_array_equal(a, poisson_arrivals(1000.0, 20_000, seed=3))


def test_open_loop_answers_every_request_and_the_batched_mlp_equals_row_by_row():
    model = make_mlp(8, 16, 2)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    rows = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    batcher = DynamicBatcher(run, max_batch=16, max_wait_s=0.001)
    result = open_loop(batcher, rows, rate=2000.0, duration_s=0.1, seed=0)
    batched = [batcher.submit(r) for r in rows]
    got = np.stack([f.result(timeout=5) for f in batched])
    batcher.close()
    assert result.mean_batch >= 1 and result.p99_ms >= result.p50_ms > 0
    np.testing.assert_allclose(got, run(rows), atol=1e-6)


def test_the_demo_prints_batch_1_and_batched_rows(capsys):
    argv = ["--width", "32", "--depth", "1", "--d-in", "16", "--loads", "0.05", "--duration", "0.2"]
    assert demo(argv) == 0
    out = capsys.readouterr().out
    assert "batch 1" in out and "batched ≤32, 2 ms" in out
