"""rag on a public BEIR dataset (`--data beir:<folder>`): index the corpus with progress, score every retriever.

Each BEIR document is one article with one section (title + abstract); a long abstract becomes overlapping
windows like any long section, and a document ranks at its best window (max-passage). Retrievers, all on the
one index `mlsd rag index --data` built:

- bm25, dense (MiniLM mean-pooled, exact inner product), hybrid (reciprocal-rank fusion of the two);
- maxsim: the hybrid candidates re-scored by MiniLM late interaction (ColBERT-style MaxSim over the token
  embeddings the index already stores). Needs no training data of the target corpus: the zero-shot option;
- rerank (transferred): the LightGBM reranker trained on the support KB (`mlsd rag train` at --scale small),
  applied as is. Its features (RRF, BM25 and dense ranks, MaxSim, title overlap) carry over; their weights were
  learned on help-center questions, so it is reported as transferred, not as tuned for the corpus;
- rerank + maxsim: that reranker's ranking fused with MaxSim's (RRF, nothing fitted): still no target data;
- in-domain (`mlsd rag tune --data`): LightGBM trained on the corpus's own train split (qrels/train.tsv), its
  settings chosen on a validation part of train; the test split is read once, for the final row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import cast

import lightgbm as lgb
import numpy as np

from infra.console import progress, progress_bar
from infra.metrics import ndcg_at_k, recall_at_k
from systems.rag_search.documents import Article, BeirDataset, Section
from systems.rag_search.index import SearchIndex
from systems.rag_search.model import FEATURES, MiniLM, Reranker
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
    with progress_bar(len(articles), "embedding BEIR documents") as bar:
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
            for qid, text in progress(ds.queries.items(), f"eval {mode} (queries)")
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


# ------------------------------------------------------------------ the reranker on the corpus's own judgements
# Query-relative features on top of the reranker's: a raw MaxSim of 0.6 means something else on help-center
# sections than on abstracts, its distance from the best candidate of the same query does not.
TUNE_FEATURES = (*FEATURES, "maxsim_gap", "maxsim_rank", "dense_gap")
VALIDATION_SHARE = 0.2  # of the train split's queries (by a hash of the query id): where the choices are made
RRF_K = 60


@dataclass
class CandidateTable:
    """Every query's fused candidate windows (depth DEPTH per retriever) with the features the rerankers read."""

    X: np.ndarray  # (N, F) TUNE_FEATURES of each window
    y: np.ndarray  # (N,) 1 when the window's document is judged relevant to the query
    query: np.ndarray  # (N,) row of the window's query in `qids`
    doc: np.ndarray  # (N,) document id of each window
    qids: list[str]
    relevant: list[set[str]]

    def rows(self, queries: np.ndarray) -> np.ndarray:
        """The window rows of these query rows (a boolean mask)."""
        return np.isin(self.query, queries)


def candidate_table(searcher: Searcher, ds: BeirDataset, desc: str) -> CandidateTable:
    searcher.depth = DEPTH
    X, y, query, doc = [], [], [], []
    qids = list(ds.queries)
    for qi, qid in enumerate(progress(qids, f"{desc} (queries)")):
        cands = searcher.candidates(searcher.embed(ds.queries[qid]))
        feats = np.array([c.features() for c in cands], dtype=np.float64)  # (C, len(FEATURES))
        ms, de = feats[:, FEATURES.index("maxsim")], feats[:, FEATURES.index("dense")]
        ms_rank = np.argsort(np.argsort(-ms)) + 1
        X.append(np.column_stack([feats, ms - ms.max(), ms_rank, de - de.max()]))
        for c in cands:
            article = searcher.index.chunks[c.idx].article_id
            doc.append(article)
            y.append(int(article in ds.qrels[qid]))
            query.append(qi)
    return CandidateTable(np.concatenate(X), np.array(y), np.array(query), np.array(doc), qids,
                          [set(ds.qrels[q]) for q in qids])  # fmt: skip


def doc_ndcg(table: CandidateTable, scores: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Mean nDCG@k over these query rows, a document ranked at its best window's score."""
    out = []
    for qi in queries:
        rows = np.flatnonzero(table.query == qi)
        best: dict[str, float] = {}
        for r in rows[np.argsort(-scores[rows], kind="stable")]:
            best.setdefault(table.doc[r], scores[r])
        out.append(ndcg_at_k(list(best), table.relevant[qi], k))
    return float(np.mean(out))


def rank_fusion(table: CandidateTable, *scores: np.ndarray) -> np.ndarray:
    """RRF of several scorings of the same windows, ranked within each query: sum of 1 / (RRF_K + rank)."""
    fused = np.zeros(len(table.y))
    for s in scores:
        for qi in np.unique(table.query):
            rows = np.flatnonzero(table.query == qi)
            fused[rows] += 1.0 / (RRF_K + np.argsort(np.argsort(-s[rows], kind="stable")) + 1)
    return fused


IN_DOMAIN_GRID = {  # the choices made on validation (each a LightGBM run over TUNE_FEATURES)
    "binary, 200 trees": {"objective": "binary", "rounds": 200},
    "lambdarank, 100 trees": {"objective": "lambdarank", "rounds": 100},
    "lambdarank, 300 trees": {"objective": "lambdarank", "rounds": 300},
    "lambdarank, 300 trees, reranker features only": {"objective": "lambdarank", "rounds": 300, "base": True},
}


def fit_in_domain(table: CandidateTable, rows: np.ndarray, choice: dict, seed: int = 0) -> lgb.Booster:
    """LightGBM on the windows of these rows (query-contiguous, as the table was built)."""
    cols = len(FEATURES) if choice.get("base") else len(TUNE_FEATURES)
    params = {"objective": choice["objective"], "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20,
              "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "seed": seed, "num_threads": 2,
              "verbose": -1, "deterministic": True}  # fmt: skip
    if choice["objective"] == "lambdarank":
        params |= {"metric": "ndcg", "eval_at": [10]}
    _, group = np.unique(table.query[rows], return_counts=True)
    data = lgb.Dataset(
        table.X[rows, :cols], table.y[rows], group=group, feature_name=list(TUNE_FEATURES[:cols])
    )
    return lgb.train(params, data, num_boost_round=choice["rounds"])


def predict(booster: lgb.Booster, table: CandidateTable) -> np.ndarray:
    scores = booster.predict(table.X[:, : booster.num_feature()], num_threads=1)
    return cast(np.ndarray, scores)  # lightgbm's type also covers sparse input: dense in, dense out


def zero_shot_scores(table: CandidateTable, transferred: Reranker | None) -> dict[str, np.ndarray]:
    """The rows that use no judgement of the corpus: fusion, MaxSim, the KB's reranker, and that reranker fused
    with MaxSim (RRF of the two rankings, fixed k=60: nothing is fitted, so nothing can fit the corpus)."""
    ms = table.X[:, FEATURES.index("maxsim")]
    out = {"hybrid (RRF)": table.X[:, FEATURES.index("rrf")], "maxsim (zero-shot)": ms}
    if transferred is not None and transferred.booster is not None:
        kb = transferred.predict(table.X[:, : len(FEATURES)])
        out["rerank (transferred from the support KB)"] = kb
        out["rerank + maxsim (transferred, RRF of the two)"] = rank_fusion(table, kb, ms)
    return out


def tune_reranker(
    searcher: Searcher, train: BeirDataset, test: BeirDataset, transferred: Reranker | None, seed: int = 0
) -> tuple[lgb.Booster, dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Choose the in-domain reranker on a validation part of the train split, refit it on the whole train split,
    then read the test split once. Returns the model, the validation table and the test table (nDCG@10)."""
    fit_table = candidate_table(searcher, train, "candidates (train split)")
    held = np.array([int(hashlib.sha1(q.encode()).hexdigest(), 16) % 100 < VALIDATION_SHARE * 100 for q in fit_table.qids])  # fmt: skip
    val_q, fit_q = np.flatnonzero(held), np.flatnonzero(~held)
    validation = {name: {"nDCG@10": doc_ndcg(fit_table, s, val_q)} for name, s in zero_shot_scores(fit_table, transferred).items()}  # fmt: skip
    for name, choice in IN_DOMAIN_GRID.items():
        booster = fit_in_domain(fit_table, fit_table.rows(fit_q), choice, seed)
        validation[f"in-domain: {name}"] = {
            "nDCG@10": doc_ndcg(fit_table, predict(booster, fit_table), val_q)
        }
    for row in validation.values():
        row |= {"queries": len(val_q)}
    best = max(IN_DOMAIN_GRID, key=lambda n: validation[f"in-domain: {n}"]["nDCG@10"])
    model = fit_in_domain(
        fit_table, fit_table.rows(np.arange(len(fit_table.qids))), IN_DOMAIN_GRID[best], seed
    )
    test_table = candidate_table(
        searcher, test, "candidates (test split, read once)"
    )  # the only read of test
    every = np.arange(len(test_table.qids))
    scores = zero_shot_scores(test_table, transferred) | {f"in-domain: {best} (refit on all train)": predict(model, test_table)}  # fmt: skip
    final = {
        name: {"nDCG@10": doc_ndcg(test_table, s, every), "queries": len(every)} for name, s in scores.items()
    }
    return model, validation, final
