"""ONNX Runtime sessions: CUDA provider when present, thread count settable, graph optimisations on."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger("mlsd.onnx")
_providers_logged: set[tuple[str, ...]] = set()  # each provider list is logged at INFO once per process


def available_providers(prefer_gpu: bool = True) -> list[str]:
    have = ort.get_available_providers()
    order = ["CUDAExecutionProvider", "CPUExecutionProvider"] if prefer_gpu else ["CPUExecutionProvider"]
    return [p for p in order if p in have] or ["CPUExecutionProvider"]


def make_session(
    model: str | Path | bytes,
    *,
    threads: int = 1,
    prefer_gpu: bool = True,
    optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    name: str | None = None,
) -> ort.InferenceSession:
    """An InferenceSession tuned for serving: one intra-op thread by default (latency, not throughput).

    The execution providers it runs on are logged at INFO the first time they are seen, at DEBUG after (a
    training step opens a session per variant); `name` names a model given as bytes in that line."""
    if isinstance(model, str | Path) and not Path(model).exists():
        raise FileNotFoundError(f"ONNX model {model} not found; run the system's `train` step first")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = optimization
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, sess_options=opts, providers=available_providers(prefer_gpu))
    shown = name or ("an in-memory model" if isinstance(model, bytes) else Path(model).name)
    providers = tuple(session.get_providers())
    level = logging.DEBUG if providers in _providers_logged else logging.INFO
    _providers_logged.add(providers)
    log.log(level, "ONNX Runtime %s: %s runs on %s", ort.__version__, shown, ", ".join(providers))
    return session
