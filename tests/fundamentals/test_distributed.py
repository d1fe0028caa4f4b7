import pytest

from fundamentals import distributed as dd

CFG = dd.Config(steps=8, global_batch=32)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_gradient_accumulation_equals_full_batch(k):
    assert dd.max_diff(dd.train_single(CFG, accumulation=k), dd.train_single(CFG)) < 1e-6


def test_control_one_shard_alone_differs():
    assert dd.max_diff(dd.train_on_first_half(CFG), dd.train_single(CFG)) > 1e-3


def test_accumulation_must_divide_batch():
    with pytest.raises(ValueError, match="not divisible"):
        dd.train_single(CFG, accumulation=5)


def test_ring_allreduce_formula():
    assert dd.allreduce_bytes_per_rank(100, 2) == 100
    assert dd.allreduce_bytes_per_rank(100, 4) == 150
    assert dd.allreduce_bytes_per_rank(100, 1000) == pytest.approx(199.8)
    assert dd.allreduce_seconds(1e9, 2, 100) == pytest.approx(0.01)


def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    res = dd.launch_ddp(CFG, tmp_path / "ddp.pt", nproc=2, timeout_s=120)
    assert res["world"] == 2
    assert res["replica_drift"] == 0.0
    assert dd.max_diff(res["weights"], dd.train_single(CFG)) < 1e-5


def test_demo_prints_tables_without_ddp(capsys):
    assert dd.demo(["--steps", "3", "--no-ddp"]) == 0
    out = capsys.readouterr().out
    assert "accumulated" in out and "ring all-reduce" in out
