"""`make gpu-check`: what the GPU path really does on a CUDA machine, in one short run (< 5 minutes).

1. which builds are installed (faiss GPU?, ONNX Runtime's providers, torch CUDA);
2. the CUDA-only tests (`pytest -m cuda`);
3. a FAISS index moved to the GPU with the recsys serving code (`maybe_gpu`), a batch of queries timed on the GPU
   and on the CPU index in the same run, and their top-k agreement;
4. an ONNX model (the shape of the recsys user tower: an MLP) on the CUDA execution provider vs the CPU one;
5. a JSON report (--out). Each part that cannot run says why in the report instead of failing the run.

Without CUDA it prints one line and exits 0. It needs only the repo and its virtualenv: no artifacts, no network.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _timed(fn, repeats: int = 5) -> float:  # noqa: ANN001
    """Best wall-clock seconds of `repeats` calls (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def check_torch() -> dict[str, Any]:
    import torch  # each part imports its library here: a part whose library fails reports it, the rest run

    out: dict[str, Any] = {"version": torch.__version__, "cuda": torch.cuda.is_available()}
    if out["cuda"]:
        out["device"] = torch.cuda.get_device_name(0)
        a = torch.randn(4096, 4096, device="cuda")
        torch.cuda.synchronize()
        s = _timed(lambda: (a @ a, torch.cuda.synchronize()))
        out["matmul_4096_tflops_fp32"] = round(2 * 4096**3 / s / 1e12, 1)
    return out


def check_faiss(n: int, d: int, queries: int, k: int) -> dict[str, Any]:
    import faiss  # see check_torch

    from systems.recsys_two_tower.index import maybe_gpu  # the serving code's own move to the GPU

    out: dict[str, Any] = {
        "version": faiss.__version__,
        "gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
    }
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((n, d), dtype=np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = xb[rng.choice(n, queries, replace=False)] + 0.05 * rng.standard_normal(
        (queries, d), dtype=np.float32
    )
    nlist = min(1024, max(16, n // 64))
    cpu = faiss.index_factory(d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    cpu.train(xb[:100_000])
    cpu.add(xb)
    cpu.nprobe = 32
    out["build_s_cpu"] = round(time.perf_counter() - t0, 2)
    out["index"] = f"IVF{nlist},Flat nprobe 32 over {n:,} x {d}"
    _, cpu_ids = cpu.search(xq, k)
    out["cpu_ms_per_query_batched"] = round(_timed(lambda: cpu.search(xq, k)) / queries * 1000, 4)
    gpu = maybe_gpu(cpu)
    out["moved_to_gpu"] = gpu is not cpu
    out["index_type_in_use"] = type(gpu).__name__
    if gpu is cpu:
        out["gpu"] = (
            "skipped: this faiss build has no GPU support or sees no GPU (install with `make install GPU=1`)"
        )
        return out
    _, gpu_ids = gpu.search(xq, k)
    out["gpu_ms_per_query_batched"] = round(_timed(lambda: gpu.search(xq, k)) / queries * 1000, 4)
    out["speedup"] = round(out["cpu_ms_per_query_batched"] / out["gpu_ms_per_query_batched"], 1)
    agree = np.mean([len(set(a) & set(b)) / k for a, b in zip(cpu_ids, gpu_ids, strict=True)])
    out["topk_agreement_gpu_vs_cpu"] = round(float(agree), 4)
    return out


def check_onnx(batch: int) -> dict[str, Any]:
    import onnxruntime as ort  # see check_torch
    import torch

    from infra.serving.onnx import make_session  # imports onnxruntime: inside the part, see check_torch

    out: dict[str, Any] = {"version": ort.__version__, "available_providers": ort.get_available_providers()}
    model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64)).eval()
    x = torch.randn(batch, 128)
    path = REPO / ".mlsd" / "gpu-check" / "mlp.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (x,),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b"}},
        dynamo=False,
    )
    feeds = {"x": x.numpy()}
    cpu = make_session(path, prefer_gpu=False)
    y_cpu = cpu.run(None, feeds)[0]
    out["cpu_ms_per_batch"] = round(_timed(lambda: cpu.run(None, feeds)) * 1000, 3)
    if "CUDAExecutionProvider" not in out["available_providers"]:
        out["cuda"] = (
            "skipped: ONNX Runtime has no CUDA execution provider here (install with `make install GPU=1`)"
        )
        return out
    gpu = make_session(path, prefer_gpu=True)
    out["providers_in_use"] = gpu.get_providers()
    y_gpu = gpu.run(None, feeds)[0]
    out["cuda_ms_per_batch"] = round(_timed(lambda: gpu.run(None, feeds)) * 1000, 3)
    out["max_abs_diff_cuda_vs_cpu"] = float(np.abs(y_gpu - y_cpu).max())
    return out


def run_cuda_tests() -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, timeout=240)  # fmt: skip
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-300:]
    return {"exit_code": proc.returncode, "summary": tail}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu" / "report.json")
    p.add_argument("--vectors", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=4096)
    args = p.parse_args(argv)
    try:
        import torch  # the one check that decides whether there is anything to do

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        print("gpu-check: torch sees no CUDA device on this machine; nothing to check")
        return 0
    report: dict[str, Any] = {"machine": platform.node(), "python": platform.python_version()}
    parts = {
        "torch": check_torch,
        "faiss": lambda: check_faiss(args.vectors, 64, args.queries, 100),
        "onnxruntime": lambda: check_onnx(1024),
        "cuda_tests": run_cuda_tests,
    }
    for name, fn in parts.items():
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as exc:  # one part failing must not hide the others' results
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        report[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"gpu-check {name}: {json.dumps(report[name])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"gpu-check: report written to {args.out}")
    failed = report["cuda_tests"].get("exit_code", 1) not in (0, 5)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
