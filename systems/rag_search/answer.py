"""The request path, top to bottom: question → hybrid retrieval → rerank → refuse or generate → verify citations.

`RagPipeline.ask` is what `/ask`, `mlsd rag ask` and the evaluation all call; each stage is timed (Server-Timing
header, /stats) with `infra.serving.stage`. The pieces it calls: `retrieve.py` (BM25 + dense + RRF + reranker),
`generate.py` (generators and the citation verifier); the refusal threshold comes from `train.py`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from infra.artifacts import Artifacts
from infra.resilience import guarded_call
from infra.serving import stage
from systems.rag_search.config import ANSWER_CONFIG, ENCODER_FILES, INDEX_DIR, INDEX_FILE, RERANKER
from systems.rag_search.data import REFUSAL
from systems.rag_search.generate import Answer, ExtractiveGenerator, Generator, Passage, SupportJudge, verify
from systems.rag_search.index import SearchIndex
from systems.rag_search.model import Candidate, MiniLM, Reranker
from systems.rag_search.retrieve import Query, Searcher

_PII = [
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[EMAIL]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[CARD]"),
    (re.compile(r"\+?\d[\d ().-]{7,}\d"), "[PHONE]"),
]


def redact_pii(text: str) -> str:
    """Emails, card numbers and phone numbers replaced by placeholders (what logs keep of a question)."""
    for pattern, repl in _PII:
        text = pattern.sub(repl, text)
    return text


_PART_SPLIT = re.compile(
    r"\?\s+|;\s+|,?\s+and also\s+|,?\s+(?:also|and)\s+(?=(?:how|what|where|when|why|which|who|is|are|can|could|do|does|will|should)\b)",
    re.I,
)


MAX_QUESTION_PARTS = (
    3  # retrievals one question may cost: "a? b? c? ..." cannot amplify one request into fifty
)


def split_question(question: str, max_parts: int = MAX_QUESTION_PARTS) -> list[str]:
    """A multi-part question into its parts: "how much is Plus and also is there a trial?" -> two questions.
    Parts past `max_parts` are folded into the last one (still read, never retrieved on their own)."""
    parts = [p.strip(" ?") for p in _PART_SPLIT.split(question) if p and len(p.strip(" ?").split()) >= 2]
    if len(parts) > max_parts:
        parts = [*parts[: max_parts - 1], " ".join(parts[max_parts - 1 :])]
    return parts if len(parts) > 1 else [question]


@dataclass
class AnswerConfig:
    """How answers are made; `mlsd rag train` writes it (model/config.json) with the refusal threshold it chose."""

    refuse_below: float = 0.2  # top reranker probability under which the system says it does not know
    k: int = 5  # passages handed to the generator
    attribute: bool = True  # cite uncited generator sentences post hoc when a passage supports them

    @classmethod
    def load(cls, path: Path) -> AnswerConfig:
        return cls(**json.loads(path.read_text())) if path.exists() else cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))


def load_encoder(art: Artifacts, name: str, threads: int | None = None) -> MiniLM:
    """MiniLM run as `name` says (model.ENCODERS): PyTorch, or the ONNX file `mlsd rag encoder` exported."""
    if name == "torch":
        return MiniLM(threads)
    return MiniLM(threads, onnx=art.require(ENCODER_FILES[name], "encoder"), name=name)


class RagPipeline:
    """The index, the encoder, the reranker and the generators, and `ask`: one question in, a cited answer out."""

    def __init__(
        self, index: SearchIndex, encoder: MiniLM, reranker: Reranker | None, config: AnswerConfig
    ) -> None:
        self.index, self.encoder, self.config = index, encoder, config
        self.searcher = Searcher(index, encoder, reranker)
        self.judge = SupportJudge(encoder)
        self.generators: dict[str, Generator] = {"extractive": ExtractiveGenerator()}
        self.mode = "rerank"  # the retriever `ask` uses (retrieve.MODES); the console's knob turns it

    @classmethod
    def load(cls, art: Artifacts, threads: int | None = None) -> RagPipeline:
        """From the artifact folder: the index (`mlsd rag index`), the reranker and its threshold (`mlsd rag train`)."""
        art.require(INDEX_FILE, "index")
        reranker = Reranker.load(art.require(RERANKER, "train"))
        index = SearchIndex.load(art.dir(INDEX_DIR))
        encoder = load_encoder(art, index.encoder, threads)
        return cls(index, encoder, reranker, AnswerConfig.load(art.path(ANSWER_CONFIG)))

    def search(self, question: str, k: int = 10, mode: str = "rerank") -> list[dict]:
        with stage("retrieve"):
            hits = self.searcher.search(question, k, mode)
        return [self.source(i + 1, h.idx, h.score) for i, h in enumerate(hits)]

    def source(self, n: int, idx: int, score: float) -> dict:
        c = self.index.chunks[idx]
        return {"n": n, "chunk_id": c.chunk_id, "article_id": c.article_id, "version": c.version, "title": c.title,
                "section": c.section, "url": c.anchor, "status": c.status, "snippet": c.text[:300], "score": round(score, 4)}  # fmt: skip

    def retrieve(self, question: str, k: int, q: Query) -> list[Candidate]:
        """Reranked hits; a multi-part question is retrieved part by part and the lists interleaved."""
        parts = split_question(question)
        if len(parts) == 1:
            return self.searcher.search(question, k, self.mode, q=q)
        per_part = [self.searcher.search(p, k, self.mode) for p in parts]
        merged, seen = [], set()
        for rank in range(k):
            for hits in per_part:
                if rank < len(hits) and hits[rank].idx not in seen:
                    seen.add(hits[rank].idx)
                    merged.append(hits[rank])
        return merged[:k]

    def generate(
        self, gen: Generator, question: str, qvec: np.ndarray, passages: list[Passage]
    ) -> tuple[str, str | None]:
        """The generator's text, and why it was replaced: a generator behind a network call (one with a
        `breaker`) gets its deadline and circuit breaker, and the extractive answer when it fails or is slow."""
        breaker, deadline_s = getattr(gen, "breaker", None), getattr(gen, "deadline_s", None)
        if breaker is None or deadline_s is None:
            return gen.generate(question, qvec, passages), None
        got = guarded_call(gen.generate, question, qvec, passages, deadline_s=deadline_s, breaker=breaker,
                           fallback=None)  # fmt: skip
        if got.value is None:
            return self.generators["extractive"].generate(question, qvec, passages), got.degraded
        return got.value, None

    def ask(self, question: str, k: int | None = None, generator: str = "extractive") -> dict:
        """Answer with inline [n] citations, the sources they point to, and per-stage milliseconds."""
        k = k or self.config.k
        ms: dict[str, float] = {}
        t = time.perf_counter()
        with stage("embed"):
            q = self.searcher.embed(question)
        ms["embed"], t = (time.perf_counter() - t) * 1000, time.perf_counter()
        with stage("retrieve_rerank"):
            hits = self.retrieve(question, k, q)
        ms["retrieve_rerank"], t = (time.perf_counter() - t) * 1000, time.perf_counter()
        passages = [
            Passage(i + 1, self.index.chunks[h.idx], h.score, self.index.sent_emb[h.idx])
            for i, h in enumerate(hits)
        ]
        if not passages or max(p.score for p in passages) < self.config.refuse_below:
            answer = Answer(REFUSAL, True, flags=["low_retrieval_confidence"])
        else:
            gen = self.generators.get(generator)
            if gen is None:
                raise ValueError(f"generator {generator!r} is not loaded; loaded: {sorted(self.generators)}")
            with stage("generate"):
                raw, degraded = self.generate(gen, question, q.vec, passages)
            ms["generate"], t = (time.perf_counter() - t) * 1000, time.perf_counter()
            with stage("verify"):
                answer = verify(raw, passages, self.judge, attribute=self.config.attribute)
            ms["verify"] = (time.perf_counter() - t) * 1000
            if degraded:
                answer.flags.append(f"generator_degraded: {degraded}")
        cited = sorted({c for s in answer.sentences for c in s["citations"]})
        return {
            "answer": answer.text,
            "refused": answer.refused,
            "sentences": answer.sentences,
            "dropped": answer.dropped,
            "flags": answer.flags,
            "raw": answer.raw,
            "sources": [
                self.source(p.n, h.idx, p.score) for p, h in zip(passages, hits, strict=True) if p.n in cited
            ],
            "passages": [self.source(p.n, h.idx, p.score) for p, h in zip(passages, hits, strict=True)],
            "generator": generator,
            "stages_ms": {k2: round(v, 3) for k2, v in ms.items()},
        }
