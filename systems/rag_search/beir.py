"""rag on a public BEIR dataset (`--data beir:<folder>`): index the corpus with progress, score every retriever.

Each BEIR document is one article with one section (title + abstract); a long abstract becomes overlapping
windows like any long section, and a document ranks at its best window (max-passage). Retrievers, all on the
one index `mlsd rag index --data` built:

- bm25, dense (MiniLM mean-pooled, exact inner product), hybrid (reciprocal-rank fusion of the two);
- maxsim: the hybrid candidates re-scored by MiniLM late interaction (ColBERT-style MaxSim over the token
  embeddings the index already stores). Needs no training data of the target corpus: the zero-shot option;
- rerank (transferred): the LightGBM reranker trained on the support KB (`mlsd rag train` at --scale small),
  applied as is. Its features (RRF, BM25 and dense ranks, MaxSim, title overlap) carry over; their weights were
  learned on help-center questions, so it is reported as transferred, not as tuned for the corpus.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from infra.metrics import ndcg_at_k, recall_at_k
from systems.rag_search.documents import Article, BeirDataset, Section
from systems.rag_search.index import SearchIndex
from systems.rag_search.model import MiniLM
from systems.rag_search.retrieve import Searcher

BEIR_MODES = ("bm25", "dense", "hybrid", "maxsim", "rerank")
DEPTH = 100  # candidates per retriever before fusion: Recall@100 needs 100
BATCH_DOCS = 64  # documents per progress step


def beir_articles(ds: BeirDataset) -> list[Article]:
    return [Article(doc_id, 1, title or doc_id, "beir", [Section("text", text)]) for doc_id, (title, text) in ds.corpus.items()]  # fmt: skip


def index_beir(ds: BeirDataset, encoder: MiniLM) -> SearchIndex:
    """The corpus embedded in batches (a progress bar in documents), one MiniLM pass per window; BM25 once."""
    index = SearchIndex(encoder.dim, encoder.name)
    articles = beir_articles(ds)
    with tqdm(total=len(articles), desc="embedding BEIR documents", unit="doc") as bar:
        for start in range(0, len(articles), BATCH_DOCS):
            batch = articles[start : start + BATCH_DOCS]
            index.add_articles(batch, encoder, sentences_in_context=True, bm25=False)
            bar.update(len(batch))
    index.rebuild_bm25()
    return index


def _ranked_docs(searcher: Searcher, text: str, mode: str) -> list[str]:
    hits = searcher.search(text, DEPTH, mode)  # every retriever's top-DEPTH windows
    return list(dict.fromkeys(searcher.index.chunks[h.idx].article_id for h in hits))


def beir_eval(searcher: Searcher, ds: BeirDataset, modes: tuple[str, ...] = BEIR_MODES) -> dict[str, dict]:
    """nDCG@10 and Recall@100 (BEIR's headline metrics, binary gains from qrels > 0) per retriever."""
    searcher.depth = DEPTH
    out = {}
    for mode in modes:
        if mode == "rerank" and (searcher.reranker is None or searcher.reranker.booster is None):
            continue
        rows = [
            (ndcg_at_k(ranked, set(ds.qrels[qid]), 10), recall_at_k(ranked, set(ds.qrels[qid]), 100))
            for qid, text in tqdm(ds.queries.items(), desc=f"eval {mode}", unit="query", leave=False)
            for ranked in [_ranked_docs(searcher, text, mode)]
        ]
        arr = np.array(rows)
        name = {"hybrid": "hybrid (RRF, no training)", "maxsim": "maxsim (zero-shot MiniLM late interaction)",
                "rerank": "rerank (LightGBM, transferred from the support KB)"}.get(mode, mode)  # fmt: skip
        out[name] = {
            "ndcg@10": float(arr[:, 0].mean()),
            "recall@100": float(arr[:, 1].mean()),
            "queries": len(rows),
        }
    return out
