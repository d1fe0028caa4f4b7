"""Adapt a pretrained transformer to a new task three ways: full fine-tune, LoRA, prompt tuning.

The base model is a tiny transformer pretrained here, in seconds, on a synthetic counting task (which of
tokens 1-4 occurs most often). The new task reuses those features but asks something else (does token 1 occur
more often than token 2?) with few labelled examples. Each method gets the same steps, learning rate and data:

- full fine-tune: every weight trains; Adam keeps two fp32 states for each of them.
- LoRA: W x + (alpha / r) B A x on the attention projections, W frozen, A (r, in) random, B (out, r) zero, so
  training starts exactly at the pretrained function; after training, B A folds into W (no serving cost).
- prompt tuning: n learned vectors are prepended to the token embeddings; the transformer is frozen.
All three train a fresh 2-way classification head (the new labels did not exist in pretraining).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fundamentals.attention import CausalSelfAttention
from infra.steps import OneLineParser

CACHE = Path(".mlsd/fundamentals/adapters_pretrained.pt")


@dataclass
class Config:
    vocab: int = 8
    seq: int = 16
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    pretrain_steps: int = 400
    adapt_steps: int = 150
    adapt_examples: int = 128  # the new task has few labels
    batch: int = 128
    lr: float = 3e-3
    lora_rank: int = 4
    lora_alpha: float = 8.0
    prompt_len: int = 8
    seed: int = 0


# ------------------------------------------------------------------------------------------- data and model


def pretrain_batch(cfg: Config, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (n, T) and the label: which of tokens 1..4 occurs most often (ties -> the smaller token)."""
    x = torch.randint(0, cfg.vocab, (n, cfg.seq), generator=g)
    counts = torch.stack([(x == t).sum(1) for t in (1, 2, 3, 4)], dim=1)  # (n, 4)
    return x, counts.argmax(1)


def new_task_batch(cfg: Config, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The downstream task: 1 if token 1 occurs strictly more often than token 2 (ties redrawn away)."""
    x = torch.randint(0, cfg.vocab, (n * 2, cfg.seq), generator=g)
    c1, c2 = (x == 1).sum(1), (x == 2).sum(1)
    keep = c1 != c2
    return x[keep][:n], (c1 > c2).long()[keep][:n]


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.fc1, self.fc2 = nn.Linear(d_model, 4 * d_model), nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))  # (B, T, D)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyTransformer(nn.Module):
    """Token + position embeddings, causal blocks, classify from the last position."""

    def __init__(self, cfg: Config, n_classes: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq + cfg.prompt_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, n_classes)
        self.prompt: nn.Parameter | None = None  # (P, D) soft prompt, set by add_soft_prompt

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)  # (B, T, D)
        if self.prompt is not None:
            x = torch.cat([self.prompt.expand(idx.shape[0], -1, -1), x], dim=1)  # (B, P + T, D)
        x = x + self.pos(torch.arange(x.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, -1]))  # (B, C): the last token has seen the whole sequence


# ------------------------------------------------------------------------------------------------- LoRA


class LoRALinear(nn.Module):
    """y = W x + b + (alpha / r) * B (A x). W, b frozen; A (r, in) Kaiming-uniform, B (out, r) zeros."""

    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.r, self.scaling = r, alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear (and peft) initialise A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling  # (..., out)

    def merged(self) -> nn.Linear:
        """A plain Linear with W + scaling * B A: the same function, zero extra latency at serving."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scaling * self.lora_B @ self.lora_A)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def add_lora(model: nn.Module, targets: tuple[str, ...], r: int, alpha: float) -> nn.Module:
    """Freeze everything, then wrap each nn.Linear whose attribute name is in `targets` with LoRALinear."""
    model.requires_grad_(False)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(module, name, LoRALinear(child, r, alpha))
    return model


def add_soft_prompt(model: TinyTransformer, length: int, seed: int = 0) -> TinyTransformer:
    """Freeze the model and prepend `length` trainable embeddings, initialised from real token embeddings."""
    model.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    init = model.tok.weight[torch.randint(0, model.tok.num_embeddings, (length,), generator=g)]
    model.prompt = nn.Parameter(init.detach().clone())  # (P, D)
    return model


# -------------------------------------------------------------------------------------------- training


def train(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], cfg: Config, steps: int, seed: int
) -> tuple[float, torch.optim.Optimizer]:
    """Adam on the trainable parameters, random minibatches; returns median seconds per step and the optimizer
    (the median, because this runs on shared CPUs where a few steps get descheduled)."""
    x, y = data
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        i = torch.randint(0, len(x), (cfg.batch,), generator=g)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return (sorted(times)[len(times) // 2] if times else 0.0), opt


@torch.no_grad()
def accuracy(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    model.eval()
    x, y = data
    return (model(x).argmax(1) == y).float().mean().item()


def pretrained_model(cfg: Config, cache: Path | None = CACHE) -> tuple[TinyTransformer, float]:
    """The base model and its accuracy on the pretraining task; trained once, then loaded from `cache`."""
    torch.manual_seed(cfg.seed)
    model = TinyTransformer(cfg, n_classes=4)
    g = torch.Generator().manual_seed(cfg.seed)
    test = pretrain_batch(cfg, 2000, g)
    key = f"{cfg.vocab}-{cfg.seq}-{cfg.d_model}-{cfg.n_heads}-{cfg.n_layers}-{cfg.prompt_len}-{cfg.pretrain_steps}-{cfg.seed}"
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        if saved.get("key") == key:
            model.load_state_dict(saved["state"])
            return model, accuracy(model, test)
    train(model, pretrain_batch(cfg, 20_000, g), cfg, cfg.pretrain_steps, cfg.seed)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "state": model.state_dict()}, cache)
    return model, accuracy(model, test)


def for_new_task(base: TinyTransformer, cfg: Config) -> TinyTransformer:
    """A copy of the base model with a fresh, trainable 2-way head."""
    model = TinyTransformer(cfg, n_classes=4)
    model.load_state_dict(base.state_dict())
    torch.manual_seed(cfg.seed + 1)
    model.head = nn.Linear(cfg.d_model, 2)
    return model


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k != "step")


def compare_methods(cfg: Config, cache: Path | None = CACHE) -> tuple[float, list[dict[str, float | str]]]:
    """Pretrain (or load) the base, adapt it four ways, return its pretraining accuracy and one row per method."""
    base, base_acc = pretrained_model(cfg, cache)
    g = torch.Generator().manual_seed(cfg.seed + 100)
    train_data, test_data = new_task_batch(cfg, cfg.adapt_examples, g), new_task_batch(cfg, 4000, g)

    def full(m: TinyTransformer) -> TinyTransformer:
        return m

    def head_only(m: TinyTransformer) -> TinyTransformer:
        m.requires_grad_(False)
        m.head.requires_grad_(True)
        return m

    def lora(m: TinyTransformer) -> TinyTransformer:
        add_lora(m, ("q_proj", "v_proj"), cfg.lora_rank, cfg.lora_alpha)
        m.head.requires_grad_(True)
        return m

    def prompt(m: TinyTransformer) -> TinyTransformer:
        add_soft_prompt(m, cfg.prompt_len, cfg.seed)
        m.head.requires_grad_(True)
        return m

    def scratch(m: TinyTransformer) -> TinyTransformer:
        torch.manual_seed(cfg.seed + 2)
        fresh = TinyTransformer(cfg, n_classes=2)
        m.load_state_dict(fresh.state_dict())
        return m

    methods = {
        "full fine-tune": full,
        f"LoRA r={cfg.lora_rank} (q, v)": lora,
        f"prompt tuning ({cfg.prompt_len} vectors)": prompt,
        "head only (linear probe)": head_only,
        "no pretraining (full)": scratch,
    }
    rows: list[dict[str, float | str]] = []
    for name, prepare in methods.items():
        model = prepare(for_new_task(base, cfg))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        step_s, opt = train(model, train_data, cfg, cfg.adapt_steps, cfg.seed)
        rows.append(
            {
                "method": name,
                "trainable": trainable,
                "total": total,
                "opt_bytes": optimizer_state_bytes(opt),
                "ms_per_step": step_s * 1e3,
                "accuracy": accuracy(model, test_data),
            }
        )
    return base_acc, rows


def peft_equivalence(cfg: Config, seed: int = 0) -> dict[str, float]:
    """Our LoRA and peft's LoRA with identical A, B on the same frozen model: max |output diff| and grad diff."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = TinyTransformer(cfg, n_classes=2)
    ours = TinyTransformer(cfg, n_classes=2)
    ours.load_state_dict(base.state_dict())
    plain = TinyTransformer(cfg, n_classes=2)
    plain.load_state_dict(base.state_dict())
    add_lora(ours, ("q_proj", "v_proj"), cfg.lora_rank, cfg.lora_alpha)
    peft_model = get_peft_model(
        base,
        LoraConfig(
            r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]
        ),
    )
    g = torch.Generator().manual_seed(seed)
    ours_lora = {n: m for n, m in ours.named_modules() if isinstance(m, LoRALinear)}
    for name, module in peft_model.base_model.model.named_modules():
        if name in ours_lora:
            mine = ours_lora[name]
            with torch.no_grad():
                mine.lora_B.normal_(generator=g)  # non-zero B so the LoRA path matters
                module.lora_A["default"].weight.copy_(mine.lora_A)
                module.lora_B["default"].weight.copy_(mine.lora_B)
    x = torch.randint(0, cfg.vocab, (8, cfg.seq), generator=g)
    out_ours, out_peft = ours(x), peft_model(x)
    out_ours.square().sum().backward()
    out_peft.square().sum().backward()
    grad_diff = 0.0
    for name, module in peft_model.base_model.model.named_modules():
        if name in ours_lora:
            grad_diff = max(
                grad_diff,
                (module.lora_B["default"].weight.grad - ours_lora[name].lora_B.grad).abs().max().item(),
            )
    ours_trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    peft_trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return {
        "max_out_diff": (out_ours - out_peft).abs().max().item(),
        "max_grad_diff": grad_diff,
        "lora_delta": (out_ours - plain(x)).abs().max().item(),  # > 0: the comparison is not vacuous
        "ours_trainable_lora": ours_trainable
        - sum(p.numel() for p in ours.head.parameters() if p.requires_grad),
        "peft_trainable": peft_trainable,
    }


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals adapters", description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-steps", type=int, default=Config.pretrain_steps)
    parser.add_argument("--adapt-steps", type=int, default=Config.adapt_steps)
    parser.add_argument(
        "--examples", type=int, default=Config.adapt_examples, help="labelled examples of the new task"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true", help=f"pretrain again instead of loading {CACHE}")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    cfg = Config(
        pretrain_steps=args.pretrain_steps,
        adapt_steps=args.adapt_steps,
        adapt_examples=args.examples,
        seed=args.seed,
    )
    torch.set_num_threads(
        1
    )  # a 100k-parameter model gains nothing from threads; timings stay stable on shared CPUs
    console = Console(width=110)
    with console.status("pretraining the base model (cached under .mlsd/) and adapting it"):
        base_acc, rows = compare_methods(cfg, None if args.no_cache else CACHE)
    eq = peft_equivalence(cfg, args.seed)
    console.print(
        f"base: {cfg.n_layers} layers, d={cfg.d_model}, pretrained {cfg.pretrain_steps} steps on 'most frequent of "
        f"tokens 1-4': {base_acc:.1%} accuracy. New task: 'count(1) > count(2)?' from {cfg.adapt_examples} labels, "
        f"{cfg.adapt_steps} Adam steps, batch {cfg.batch}, lr {cfg.lr}."
    )
    console.print(
        f"our LoRALinear vs peft LoraConfig(r={cfg.lora_rank}, alpha={cfg.lora_alpha:g}) with the same A, B: "
        f"max |output diff| {eq['max_out_diff']:.1e}, max |grad diff| {eq['max_grad_diff']:.1e}, "
        f"trainable {eq['ours_trainable_lora']} vs {eq['peft_trainable']} (LoRA moves outputs by {eq['lora_delta']:.2f})"
    )
    table = Table(title="adapting the pretrained model (Adam, fp32; ms/step is the median on this CPU)")
    for col in ("method", "trainable params", "% of model", "Adam state", "ms/step", "test accuracy"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["method"]),
            f"{r['trainable']:,}",
            f"{100 * r['trainable'] / r['total']:.2f}%",
            f"{r['opt_bytes'] / 1024:.1f} KiB",
            f"{r['ms_per_step']:.1f}",
            f"{r['accuracy']:.1%}",
        )
    console.print(table)
    return 0
