"""GPU memory math for training and inference, checked against real tensors.

Training memory = weights + gradients + optimizer states + activations (+ framework overhead, ignored here).
Per parameter, Adam in fp32 costs 4 (weights) + 4 (grads) + 8 (exp_avg, exp_avg_sq) = 16 bytes; mixed precision
(bf16 weights/grads, fp32 master copy + Adam states, as in ZeRO) is also 2 + 2 + 12 = 16 bytes.
Activations per transformer layer (Korthikanti et al. 2022, 16-bit, with dropout) are s*b*h*(34 + 5*a*s/h)
bytes; flash attention drops the a*s^2 term; full activation checkpointing keeps only each layer's input (2*s*b*h)
plus one layer recomputed during backward.
Inference memory = weights + KV cache, KV cache = 2 (K and V) * layers * kv_heads * head_dim * seq * batch * bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from fundamentals.attention import CausalSelfAttention
from infra.steps import OneLineParser

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}

# bytes per parameter for (weights, gradients, master weights) by training precision
PRECISION = {
    "fp32": (4, 4, 0),
    "bf16-mixed": (2, 2, 4),  # bf16 compute copy and grads, fp32 master weights (optimizer states fp32 too)
    "bf16": (2, 2, 0),  # pure bf16: states in bf16 as well
}

# optimizer state tensors per parameter
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd-momentum": 1, "lion": 1, "sgd": 0, "adam-8bit": 2}


def optimizer_bytes_per_param(optimizer: str, precision: str) -> float:
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer '{optimizer}'; choose one of {', '.join(OPTIMIZER_STATES)}")
    if optimizer == "adam-8bit":
        return 2.0  # two 1-byte states (block-wise quantized; scales ignored)
    state_bytes = 2 if precision == "bf16" else 4
    return OPTIMIZER_STATES[optimizer] * state_bytes


@dataclass
class ModelShape:
    params: float  # total parameters
    layers: int
    hidden: int  # d_model
    heads: int  # query heads
    kv_heads: int  # key/value heads (== heads for MHA, fewer for GQA, 1 for MQA)
    head_dim: int


def activation_bytes_per_layer(
    seq: int,
    batch: int,
    hidden: int,
    heads: int,
    bytes_per_el: float = 2,
    dropout: bool = True,
    flash: bool = False,
) -> float:
    """Activations one transformer layer saves for backward (Korthikanti et al. 2022, Table 2 accounting).

    16 tensors of (s, b, h) elements: LN inputs 2, QKV 3 + their input 1, attention output 1, MLP input 1,
    GELU input 4 and output 4. Dropout adds two 1-byte (s, b, h) masks. Attention scores: softmax output
    (a, s, s) per sample, plus dropout mask (1 byte) and dropout output; flash attention stores none of them.
    """
    sbh = seq * batch * hidden
    total = 16 * sbh * bytes_per_el + (2 * sbh if dropout else 0)
    if not flash:
        ass_b = heads * seq * seq * batch
        total += ass_b * bytes_per_el + (ass_b * (1 + bytes_per_el) if dropout else 0)
    return total


def training_memory(
    shape: ModelShape,
    seq: int,
    batch: int,
    optimizer: str = "adamw",
    precision: str = "bf16-mixed",
    checkpointing: bool = False,
    flash: bool = True,
    dropout: bool = False,
) -> dict[str, float]:
    """Bytes of each component of one training step's peak (no fragmentation, no temporary buffers)."""
    if precision not in PRECISION:
        raise ValueError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISION)}")
    w, g, master = PRECISION[precision]
    act_el = 4 if precision == "fp32" else 2
    per_layer = activation_bytes_per_layer(seq, batch, shape.hidden, shape.heads, act_el, dropout, flash)
    if checkpointing:
        activations = (
            shape.layers * seq * batch * shape.hidden * act_el + per_layer
        )  # inputs + one recomputed layer
    else:
        activations = shape.layers * per_layer
    return {
        "weights": shape.params * w,
        "master weights (fp32)": shape.params * master,
        "gradients": shape.params * g,
        f"optimizer ({optimizer})": shape.params * optimizer_bytes_per_param(optimizer, precision),
        "activations" + (" (checkpointed)" if checkpointing else ""): activations,
    }


# ZeRO (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", sec. 5):
# stage 1 shards the optimizer states (and fp32 master weights) over the N data-parallel ranks, stage 2 the
# gradients too, stage 3 the 16-bit weights too. PyTorch FSDP's sharding strategies are the same cut:
# NO_SHARD = DDP (stage 0), SHARD_GRAD_OP = stage 2, FULL_SHARD = stage 3 (HYBRID_SHARD: stage 3 within a node).
ZERO_STAGES = {0: "DDP (nothing sharded)", 1: "ZeRO-1: optimizer states", 2: "ZeRO-2: + gradients",
               3: "ZeRO-3 / FSDP FULL_SHARD: + weights"}  # fmt: skip


def zero_memory_per_gpu(
    params: float, gpus: int, stage: int, optimizer: str = "adamw", precision: str = "bf16-mixed"
) -> dict[str, float]:
    """Bytes per GPU of weights, gradients and optimizer states (master weights counted with the optimizer, the
    paper's K) under ZeRO `stage` on `gpus` data-parallel ranks. Activations are not sharded by ZeRO: add them
    per GPU for its own micro-batch."""
    if stage not in ZERO_STAGES:
        raise ValueError(f"unknown ZeRO stage {stage}; choose one of 0, 1, 2, 3")
    if gpus < 1:
        raise ValueError(f"--gpus must be at least 1, got {gpus}")
    w, g, master = PRECISION[precision]
    k = master + optimizer_bytes_per_param(optimizer, precision)  # the paper's K: 12 for mixed-precision Adam
    return {
        "weights": params * w / (gpus if stage >= 3 else 1),
        "gradients": params * g / (gpus if stage >= 2 else 1),
        "optimizer states + master": params * k / (gpus if stage >= 1 else 1),
    }


def kv_cache_bytes(shape: ModelShape, seq: int, batch: int, dtype: str = "bf16") -> float:
    """K and V for every layer, kv head, position and sequence."""
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * seq * batch * BYTES[dtype]


def inference_memory(
    shape: ModelShape, seq: int, batch: int, weight_dtype: str = "bf16", kv_dtype: str = "bf16"
) -> dict[str, float]:
    return {
        f"weights ({weight_dtype})": shape.params * BYTES[weight_dtype],
        f"KV cache ({kv_dtype}, {shape.kv_heads} kv heads)": kv_cache_bytes(shape, seq, batch, kv_dtype),
    }


# ---------------------------------------------------------------- a real model to check the arithmetic against


class Block(nn.Module):
    """Pre-LN transformer block without dropout: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))  # (B, T, D)
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))  # (B, T, D)


class TinyGPT(nn.Module):
    def __init__(
        self, vocab: int, d_model: int, n_heads: int, n_layers: int, ctx: int, checkpointing: bool = False
    ):
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(ctx, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied embeddings
        self.checkpointing = checkpointing

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))  # (B, T, D)
        for block in self.blocks:
            if self.checkpointing:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.head(self.ln_f(x))  # (B, T, V)


def gpt_param_count(vocab: int, d_model: int, n_layers: int, ctx: int) -> int:
    """Closed form for TinyGPT: 12 L d^2 + 13 L d (weights and biases, 2 LNs) + (V + ctx) d + 2 d."""
    d = d_model
    per_layer = 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * 2 * d
    return n_layers * per_layer + vocab * d + ctx * d + 2 * d


def saved_activation_bytes(model: nn.Module, idx: torch.Tensor) -> int:
    """Bytes autograd saves for backward during one forward (distinct storages, parameters excluded)."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(idx)
    del logits
    return sum(seen.values())


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Real byte sizes of weights, gradients and optimizer states (after at least one step)."""
    params = list(model.parameters())
    states = [t for s in optimizer.state.values() for k, t in s.items() if torch.is_tensor(t) and k != "step"]
    return {
        "weights": sum(p.numel() * p.element_size() for p in params),
        "gradients": sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
        "optimizer": sum(t.numel() * t.element_size() for t in states),
    }


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals gpu-mem", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=8e9, help="total parameters, e.g. 8e9")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--heads", type=int, default=32, help="query heads")
    parser.add_argument("--kv-heads", type=int, default=8, help="key/value heads (GQA); = --heads for MHA")
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--optimizer", choices=list(OPTIMIZER_STATES), default="adamw")
    parser.add_argument("--precision", choices=list(PRECISION), default="bf16-mixed")
    parser.add_argument("--gpus", type=int, default=8, help="data-parallel GPUs for the ZeRO / FSDP table")
    parser.add_argument("--no-check", action="store_true", help="skip the check against real CPU tensors")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    shape = ModelShape(
        args.params, args.layers, args.heads * args.head_dim, args.heads, args.kv_heads, args.head_dim
    )
    console = Console(width=110)
    title = (
        f"training, {args.params:.3g} params, L={args.layers} h={shape.hidden} s={args.seq} b={args.batch}, "
        f"{args.optimizer}, {args.precision} (GiB)"
    )
    table = Table(title=title)
    table.add_column("component")
    for col in ("no checkpointing", "checkpointing", "no ckpt, naive attention"):
        table.add_column(col, justify="right")
    plain = training_memory(shape, args.seq, args.batch, args.optimizer, args.precision, False, True)
    ckpt = training_memory(shape, args.seq, args.batch, args.optimizer, args.precision, True, True)
    naive = training_memory(shape, args.seq, args.batch, args.optimizer, args.precision, False, False)
    for (name, a), b, c in zip(plain.items(), ckpt.values(), naive.values(), strict=True):
        table.add_row(name.replace(" (checkpointed)", ""), gib(a), gib(b), gib(c))
    table.add_row(
        "total", gib(sum(plain.values())), gib(sum(ckpt.values())), gib(sum(naive.values())), style="bold"
    )
    console.print(table)

    zero = Table(
        title=f"ZeRO / FSDP: weights + grads + optimizer per GPU, {args.optimizer}, {args.precision} (GiB)"
    )
    zero.add_column("stage")
    counts = sorted({1, 8, 64, args.gpus})
    for n in counts:
        zero.add_column(f"{n} GPU" + ("s" if n > 1 else ""), justify="right")
    for stage, name in ZERO_STAGES.items():
        cells = [gib(sum(zero_memory_per_gpu(args.params, n, stage, args.optimizer, args.precision).values()))
                 for n in counts]  # fmt: skip
        zero.add_row(f"{stage} {name}", *cells)
    console.print(zero)
    console.print("activations are not sharded: add each GPU's own (the table above), or checkpoint them")

    inf = Table(title=f"inference, s={args.seq} b={args.batch} (GiB)")
    inf.add_column("setup")
    for col in ("weights", "KV cache", "total", "KV per token (MiB)"):
        inf.add_column(col, justify="right")
    mha = ModelShape(**{**shape.__dict__, "kv_heads": args.heads})
    for label, s, wd in (
        (f"GQA {args.kv_heads} kv heads, bf16", shape, "bf16"),
        (f"MHA {args.heads} kv heads, bf16", mha, "bf16"),
        (f"GQA {args.kv_heads}, int8 weights", shape, "int8"),
    ):
        parts = inference_memory(s, args.seq, args.batch, wd)
        kv = kv_cache_bytes(s, 1, 1)
        inf.add_row(label, *(gib(v) for v in parts.values()), gib(sum(parts.values())), f"{kv / 2**20:.3f}")
    console.print(inf)

    if not args.no_check:
        check = Table(
            title="the arithmetic vs real tensors on CPU (TinyGPT, V=512, d=128, 4 layers, 4 heads, T=64, B=2)"
        )
        for col in ("quantity", "formula (bytes)", "real tensors (bytes)", "ratio"):
            check.add_column(col, justify="right")
        for name, f, r in check_against_tensors():
            check.add_row(name, f"{f:,.0f}", f"{r:,.0f}", f"{r / f:.3f}")
        console.print(check)
    return 0


def check_against_tensors(seed: int = 0) -> list[tuple[str, float, float]]:
    """Build TinyGPT, take one AdamW and one SGD-momentum step, and compare every formula to the real bytes."""
    V, D, H, L, T, B = 512, 128, 4, 4, 64, 2
    torch.manual_seed(seed)
    model = TinyGPT(V, D, H, L, T)
    idx = torch.randint(0, V, (B, T))
    P = gpt_param_count(V, D, L, T)
    rows: list[tuple[str, float, float]] = [
        ("parameters (count)", P, sum(p.numel() for p in model.parameters()))
    ]
    for opt_name, opt in (
        ("adamw", torch.optim.AdamW(model.parameters())),
        ("sgd-momentum", torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)),
    ):
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten()).backward()
        opt.step()
        real = state_bytes(model, opt)
        formula = training_memory(ModelShape(P, L, D, H, H, D // H), T, B, opt_name, "fp32")
        if opt_name == "adamw":
            rows.append(("fp32 weights", formula["weights"], real["weights"]))
            rows.append(("fp32 gradients", formula["gradients"], real["gradients"]))
        rows.append((f"{opt_name} states", formula[f"optimizer ({opt_name})"], real["optimizer"]))
    bf16 = TinyGPT(V, D, H, L, T).to(torch.bfloat16)
    rows.append(
        ("bf16 weights", P * BYTES["bf16"], sum(p.numel() * p.element_size() for p in bf16.parameters()))
    )
    per_layer = activation_bytes_per_layer(T, B, D, H, bytes_per_el=4, dropout=False, flash=False)
    rows.append(("activations / layer (fp32)", per_layer, layer_activation_bytes(model, idx)))
    ckpt = TinyGPT(V, D, H, L, T, checkpointing=True)
    ckpt.load_state_dict(model.state_dict())
    rows.append(("checkpointed: saved in forward", L * T * B * D * 4, layer_activation_bytes(ckpt, idx) * L))
    return rows


def layer_activation_bytes(model: TinyGPT, idx: torch.Tensor) -> float:
    """Saved bytes per block: (bytes with L blocks - bytes with the blocks bypassed) / L."""
    L = len(model.blocks)
    with_blocks = saved_activation_bytes(model, idx)
    blocks, model.blocks = model.blocks, nn.ModuleList()
    try:
        without = saved_activation_bytes(model, idx)
    finally:
        model.blocks = blocks
    return (with_blocks - without) / L
