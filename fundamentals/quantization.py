"""int8 quantization of a small model with ONNX Runtime (dynamic and static) and torch dynamic quantization:
size, batch-1 and batched latency, accuracy.

Dynamic quantization stores weights as int8 and quantizes each activation at run time (a min/max pass, a scale,
a cast, and a dequantize after the integer matmul). Static quantization fixes activation scales from a
calibration set, so there is no per-call range computation. Either way the win is bandwidth and integer
throughput on large matmuls; at batch 1 on a small layer the matmul is cheap and the fixed per-call overhead
of (de)quantizing can make int8 no faster, or slower, than fp32.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from infra.steps import OneLineParser


def make_data(n: int, seed: int, d_in: int = 256, n_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels from a fixed random 2-layer teacher: learnable, not linearly trivial."""
    g = torch.Generator().manual_seed(99)
    w1, w2 = torch.randn(d_in, 128, generator=g), torch.randn(128, n_classes, generator=g)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    return x, (torch.tanh(x @ w1 / d_in**0.5) @ w2).argmax(1)


def make_model(d_in: int = 256, width: int = 1024, n_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_classes)
    )


def train_model(steps: int = 300, seed: int = 0, width: int = 1024) -> nn.Module:
    torch.manual_seed(seed)
    model = make_model(width=width)
    x, y = make_data(16384, seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(x), (256,), generator=g)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def export_onnx(model: nn.Module, path: Path, d_in: int = 256) -> Path:
    torch.onnx.export(
        model, (torch.zeros(1, d_in),), str(path), input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
    )  # fmt: skip
    return path


def quantize_onnx(fp32: Path, calibration: np.ndarray, out_dir: Path) -> dict[str, Path]:
    """fp32 ONNX -> int8 dynamic (weights only) and int8 static (QDQ, activations calibrated)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(calibration, 8))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"x": batch}

    dyn, sta = out_dir / "int8_dynamic.onnx", out_dir / "int8_static.onnx"
    quantize_dynamic(str(fp32), str(dyn), weight_type=QuantType.QInt8)
    quantize_static(
        str(fp32), str(sta), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return {"onnx int8 dynamic": dyn, "onnx int8 static": sta}


def median_latency_ms(fn, x, repeats: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def compare(
    seed: int = 0, steps: int = 300, repeats: int = 200, batch: int = 256, width: int = 1024
) -> list[dict[str, float | str]]:
    """One row per variant: size KB, batch-1 and batched median latency (1 thread), accuracy, fp32 agreement."""
    import onnxruntime as ort

    model = train_model(steps, seed, width)
    x_test, y_test = make_data(4096, seed + 1)
    calib = make_data(512, seed + 2)[0].numpy()
    x_np, y_np = x_test.numpy(), y_test.numpy()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx")
        paths = {"onnx fp32": fp32, **quantize_onnx(fp32, calib, Path(tmp))}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        reference = None
        for name, path in paths.items():
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

            def run(a, sess=sess):
                return sess.run(None, {"x": a})[0]

            pred = run(x_np).argmax(1)
            reference = pred if reference is None else reference
            rows.append(
                {
                    "variant": name,
                    "size_kb": path.stat().st_size / 1024,
                    "ms_b1": median_latency_ms(run, x_np[:1], repeats),
                    "ms_batch": median_latency_ms(run, x_np[:batch], max(repeats // 10, 5)),
                    "accuracy": float((pred == y_np).mean()),
                    "agreement": float((pred == reference).mean()),
                }
            )
        tq = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        torch.save(tq.state_dict(), Path(tmp) / "tq.pt")
        torch.save(model.state_dict(), Path(tmp) / "t32.pt")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for name, m, file in (("torch fp32", model, "t32.pt"), ("torch int8 dynamic", tq, "tq.pt")):
                with torch.no_grad():
                    pred = m(x_test).argmax(1).numpy()

                    def run(a, m=m):
                        with torch.no_grad():
                            return m(a)

                    rows.append(
                        {
                            "variant": name,
                            "size_kb": (Path(tmp) / file).stat().st_size / 1024,
                            "ms_b1": median_latency_ms(run, x_test[:1], repeats),
                            "ms_batch": median_latency_ms(run, x_test[:batch], max(repeats // 10, 5)),
                            "accuracy": float((pred == y_np).mean()),
                            "agreement": float((pred == reference).mean()),
                        }
                    )
        finally:
            torch.set_num_threads(threads)
    return rows


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals quantization", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps of the fp32 model")
    parser.add_argument("--repeats", type=int, default=200, help="timed batch-1 calls per variant")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 1024], help="hidden widths to compare")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(1)  # one thread for training and timing: stable numbers on shared CPUs
    table = Table(title="MLP 256-w-w-10, 1 CPU thread, median latency")
    for col in (
        "w",
        "variant",
        "size KB",
        "batch 1 ms",
        f"batch {args.batch} ms",
        "accuracy",
        "agrees w/ fp32",
    ):
        table.add_column(col, justify="right")
    rows = [(w, r) for w in args.widths for r in compare(args.seed, args.steps, args.repeats, args.batch, w)]
    for w, r in rows:
        table.add_row(
            str(w),
            str(r["variant"]),
            f"{r['size_kb']:.0f}",
            f"{r['ms_b1']:.3f}",
            f"{r['ms_batch']:.2f}",
            f"{r['accuracy']:.1%}",
            f"{r['agreement']:.1%}",
        )
    Console(width=110).print(table)
    return 0
