"""Hybrid retrieval: BM25 and dense candidates fused with reciprocal rank fusion, then reranked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from systems.rag_search.index import SearchIndex
from systems.rag_search.model import Candidate, MiniLM, Reranker, content_words, maxsim

# hybrid and maxsim need no training data of the corpus (maxsim: the hybrid candidates re-scored by MiniLM late
# interaction, a zero-shot reranker); rerank needs the LightGBM reranker `mlsd rag train` fits.
MODES = ("bm25", "dense", "hybrid", "maxsim", "rerank")


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = 60) -> dict[int, float]:
    """RRF (Cormack et al. 2009): score(d) = sum over rankings of 1 / (k + rank(d)), rank from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return scores


@dataclass
class Query:
    text: str
    vec: np.ndarray  # (D,) normalised sentence embedding
    tokens: np.ndarray  # (Lq, D) normalised token embeddings


class Searcher:
    """One query in, ranked chunks out; `mode` picks how far down the pipeline to go."""

    def __init__(
        self, index: SearchIndex, encoder: MiniLM, reranker: Reranker | None = None, depth: int = 30
    ) -> None:
        self.index, self.encoder, self.reranker, self.depth = index, encoder, reranker, depth

    def embed(self, text: str) -> Query:
        vecs, toks = self.encoder.encode([text], max_length=64, tokens=True)
        return Query(text, vecs[0], toks[0])

    def candidates(self, q: Query) -> list[Candidate]:
        """The union of BM25 and dense top-`depth`, with every feature the reranker reads."""
        bm = self.index.search_bm25(q.text, self.depth)
        de = self.index.search_dense(q.vec, self.depth)
        fused = reciprocal_rank_fusion([[i for i, _ in bm], [i for i, _ in de]])
        cands = {i: Candidate(i, rrf=s) for i, s in fused.items()}
        top_bm = bm[0][1] if bm else 1.0
        for r, (i, s) in enumerate(bm, start=1):
            cands[i].bm25, cands[i].bm25_rank = s / max(top_bm, 1e-9), r
        for r, (i, s) in enumerate(de, start=1):
            cands[i].dense, cands[i].dense_rank = s, r
        qwords = set(content_words(q.text))
        for c in cands.values():
            chunk = self.index.chunks[c.idx]
            if c.dense_rank == 1000:  # BM25-only candidate: score it densely too (one dot product)
                c.dense = float(self.index.faiss.reconstruct(c.idx) @ q.vec)
            c.maxsim = maxsim(q.tokens, self.index.token_emb[c.idx])
            title_words = set(content_words(f"{chunk.title} {chunk.section}"))
            c.title_overlap = len(qwords & title_words) / max(1, len(qwords))
            c.archived = float(chunk.status != "current")
        return list(cands.values())

    def search(self, text: str, k: int = 10, mode: str = "rerank", q: Query | None = None) -> list[Candidate]:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        q = q or self.embed(text)
        if mode == "bm25":
            return [Candidate(i, bm25=s, score=s) for i, s in self.index.search_bm25(text, k)]
        if mode == "dense":
            return [Candidate(i, dense=s, score=s) for i, s in self.index.search_dense(q.vec, k)]
        cands = self.candidates(q)
        if mode == "maxsim":
            for c in cands:
                c.score = c.maxsim
        elif mode == "hybrid" or self.reranker is None or self.reranker.booster is None:
            for c in cands:
                c.score = c.rrf
        else:
            probs = self.reranker.predict(np.array([c.features() for c in cands], dtype=np.float64))
            for c, p in zip(cands, probs, strict=True):
                c.score = float(p)
        return sorted(cands, key=lambda c: -c.score)[:k]
