"""`make gpu-check` must run unattended on a CUDA machine: its parts run here on CPU and say what they skipped."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from benchmarks import gpu_check
from infra.config import REPO_ROOT


def test_faiss_part_runs_and_reports_why_the_gpu_was_skipped() -> None:
    out = gpu_check.check_faiss(n=20_000, d=16, queries=64, k=10)
    assert out["cpu_ms_per_query_batched"] > 0
    if not out["moved_to_gpu"]:
        assert out["gpu"].startswith("skipped:") and "GPU=1" in out["gpu"]
    else:  # a GPU build that sees a device: the GPU index must find what the CPU one finds
        assert out["topk_agreement_gpu_vs_cpu"] > 0.95


def test_onnx_part_runs_and_reports_the_providers() -> None:
    out = gpu_check.check_onnx(batch=8)
    assert "CPUExecutionProvider" in out["available_providers"] and out["cpu_ms_per_batch"] > 0
    if "CUDAExecutionProvider" in out["available_providers"]:
        assert (
            out["providers_in_use"][0] == "CUDAExecutionProvider" and out["max_abs_diff_cuda_vs_cpu"] < 1e-3
        )
    else:
        assert out["cuda"].startswith("skipped:")


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs for real (make gpu-check)")
def test_without_cuda_it_is_one_line_and_exit_0() -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip().count("\n") == 0 and "no CUDA" in proc.stdout


@pytest.mark.cuda
def test_on_a_cuda_machine_the_gpu_builds_are_really_used() -> None:
    """What `make gpu-check` installs (GPU=1) must be what runs: the index on the GPU, ONNX on CUDA."""
    faiss_out = gpu_check.check_faiss(n=50_000, d=32, queries=256, k=10)
    assert faiss_out["moved_to_gpu"], faiss_out
    assert faiss_out["topk_agreement_gpu_vs_cpu"] > 0.95
    onnx_out = gpu_check.check_onnx(batch=64)
    assert onnx_out.get("providers_in_use", [""])[0] == "CUDAExecutionProvider", onnx_out
