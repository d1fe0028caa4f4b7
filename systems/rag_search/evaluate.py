"""Offline evaluation: retrieval (Recall@5, MRR@10, nDCG@10, Recall@100) per retriever, and generation
(ALCE citation precision/recall, token F1, embedding similarity, refusal accuracy, latency) per generator."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np

from infra.console import progress
from infra.metrics import ndcg_at_k, recall_at_k, reciprocal_rank_at_k
from systems.rag_search.answer import RagPipeline
from systems.rag_search.data import Question
from systems.rag_search.documents import Article, BeirDataset, Section
from systems.rag_search.generate import Passage, SupportJudge, parse_cited_sentences
from systems.rag_search.index import SearchIndex
from systems.rag_search.model import MiniLM
from systems.rag_search.retrieve import MODES, Searcher


# ---------------------------------------------------------------------------------------------- retrieval (metrics: infra.metrics)
def dedupe(keys: list[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def ranked_keys(searcher: Searcher, text: str, mode: str, k: int) -> list[str]:
    """Section keys in rank order; an archived version never counts as the answer."""
    hits = searcher.search(text, k, mode)
    chunks = [searcher.index.chunks[h.idx] for h in hits]
    return dedupe([c.key if c.status == "current" else f"{c.key}@archived" for c in chunks])


def retrieval_table(
    searcher: Searcher, questions: list[Question], modes: tuple[str, ...] = MODES
) -> dict[str, dict[str, float]]:
    """One row per retriever over the answerable questions."""
    out = {}
    qs = [q for q in questions if q.answerable]
    for mode in modes:
        rows = []
        for q in progress(qs, f"retrieve ({mode})"):
            ranked = ranked_keys(searcher, q.text, mode, 20)
            gold = set(q.gold)
            rows.append(
                (
                    recall_at_k(ranked, gold, 5),
                    reciprocal_rank_at_k(ranked, gold, 10),
                    ndcg_at_k(ranked, gold, 10),
                )
            )
        arr = np.array(rows)
        out[mode] = {"recall@5": float(arr[:, 0].mean()), "mrr@10": float(arr[:, 1].mean()),
                     "ndcg@10": float(arr[:, 2].mean()), "questions": len(qs)}  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------- generation metrics
def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 over lower-cased word tokens, citations removed."""
    p = re.findall(r"[a-z0-9]+", re.sub(r"\[\d+\]", "", prediction.lower()))
    r = re.findall(r"[a-z0-9]+", reference.lower())
    common = sum((Counter(p) & Counter(r)).values())
    if not p or not r or common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(r)
    return 2 * prec * rec / (prec + rec)


def alce_citation_scores(
    answer: str, passages: list[Passage], judge: SupportJudge
) -> tuple[float, float, int]:
    """ALCE (Gao et al. 2023) on the generator's raw output: citation recall = share of sentences whose cited
    passages together support them; citation precision = share of citations that are not irrelevant, where a
    citation is irrelevant when it alone does not support its sentence and the other citations still do
    (and every citation of an unsupported sentence counts as imprecise). Returns (precision, recall, n_citations)."""
    by_n = {p.n: p for p in passages}
    sents = parse_cited_sentences(answer)
    if not sents:
        return 0.0, 0.0, 0
    supported, precise, total = 0, 0, 0
    for sentence, cites in sents:
        cites = [c for c in dict.fromkeys(cites) if c in by_n]
        ok = bool(cites) and judge.supports(sentence, [by_n[c] for c in cites])
        supported += ok
        total += len(cites)
        if not ok:
            continue
        for c in cites:
            rest = [by_n[x] for x in cites if x != c]
            irrelevant = (
                not judge.supports(sentence, [by_n[c]]) and bool(rest) and judge.supports(sentence, rest)
            )
            precise += not irrelevant
    return (precise / total if total else 0.0), supported / len(sents), total


def generation_table(
    pipeline: RagPipeline, questions: list[Question], generators: list[str], encoder: MiniLM
) -> dict[str, dict[str, float]]:
    """One row per generator over `questions` (answerable and unanswerable)."""
    out = {}
    for name in generators:
        prec, rec, f1, sim, refused_ok, false_refusal, lat, dropped = [], [], [], [], [], [], [], 0
        for q in progress(questions, f"generate ({name})"):
            t0 = time.perf_counter()
            res = pipeline.ask(q.text, generator=name)
            lat.append((time.perf_counter() - t0) * 1000)
            dropped += len(res["dropped"])
            if not q.answerable:
                refused_ok.append(res["refused"])
                continue
            false_refusal.append(res["refused"])
            passages = [Passage(s["n"], pipeline.index.chunks[_idx(pipeline, s["chunk_id"])], s["score"],
                                pipeline.index.sent_emb[_idx(pipeline, s["chunk_id"])]) for s in res["passages"]]  # fmt: skip
            if res["raw"]:
                p, r, n = alce_citation_scores(res["raw"], passages, pipeline.judge)
                if n:
                    prec.append(p)
                rec.append(r)
            f1.append(token_f1(res["answer"], q.reference) if not res["refused"] else 0.0)
            if res["refused"]:
                sim.append(0.0)
            else:
                v, _ = encoder.encode([re.sub(r"\[\d+\]", "", res["answer"]), q.reference], max_length=128)
                sim.append(float(v[0] @ v[1]))
        out[name] = {
            "citation_precision": _mean(prec), "citation_recall": _mean(rec), "token_f1": _mean(f1),
            "embedding_sim": _mean(sim), "refusal_accuracy": _mean(refused_ok), "false_refusal_rate": _mean(false_refusal),
            "sentences_dropped_by_verifier": dropped, "latency_mean_ms": _mean(lat),
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat else float("nan"), "questions": len(questions),
        }  # fmt: skip
    return out


def _mean(xs: list) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def _idx(pipeline: RagPipeline, chunk_id: str) -> int:
    cache = pipeline.__dict__.setdefault("_chunk_ids", {})
    if len(cache) != len(pipeline.index.chunks):
        cache.clear()
        cache.update({c.chunk_id: i for i, c in pipeline.index.chunks.items()})
    return cache[chunk_id]


def evaluate_kb(
    pipeline: RagPipeline,
    questions: list[Question],
    generators: list[str],
    llm_limit: int,
    llm_only: bool = False,
) -> dict[str, dict[str, dict[str, float]]]:
    """Retrieval per retriever and generation per generator; the LLMs are slow on CPU, so generators other than
    the extractive one answer only the first `llm_limit` questions (`llm_only`: only those generation rows)."""
    if llm_only:
        return {"generation": generation_table(pipeline, questions[:llm_limit], generators, pipeline.encoder)}
    retrieval = retrieval_table(pipeline.searcher, questions)
    generation = generation_table(pipeline, questions, generators[:1], pipeline.encoder)
    if len(generators) > 1:
        generation.update(generation_table(pipeline, questions[:llm_limit], generators[1:], pipeline.encoder))
    return {"retrieval": retrieval, "generation": generation}


def table_rows(table: dict[str, dict[str, float]], first: str) -> tuple[list[str], list[list]]:
    """A {row: {column: value}} table as (columns, rows) for infra.console, the row names in column `first`."""
    columns = list(next(iter(table.values())))
    return [first, *columns], [[name, *(row[c] for c in columns)] for name, row in table.items()]


def transpose(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    columns = list(next(iter(table.values())))
    return {c: {name: row[c] for name, row in table.items()} for c in columns}


# ---------------------------------------------------------------------------------------------- BEIR
def beir_table(
    ds: BeirDataset, encoder: MiniLM, modes: tuple[str, ...] = ("bm25", "dense", "hybrid")
) -> dict[str, dict[str, float]]:
    """nDCG@10, Recall@100, MRR@10 on a BEIR dataset; each document is one chunk (title + text)."""
    index = SearchIndex(encoder.dim, encoder.name)
    articles = [
        Article(doc_id, 1, title or doc_id, "beir", [Section("text", text)])
        for doc_id, (title, text) in ds.corpus.items()
    ]
    index.add_articles(articles, encoder)
    searcher = Searcher(index, encoder)
    out = {}
    for mode in modes:
        rows = []
        for qid, text in ds.queries.items():
            gold = set(ds.qrels[qid])
            hits = searcher.search(text, 100, mode) if mode != "hybrid" else _hybrid_deep(searcher, text)
            ranked = dedupe([index.chunks[h.idx].article_id for h in hits])
            rows.append(
                (
                    ndcg_at_k(ranked, gold, 10),
                    recall_at_k(ranked, gold, 100),
                    reciprocal_rank_at_k(ranked, gold, 10),
                )
            )
        arr = np.array(rows) if rows else np.zeros((0, 3))
        out[mode] = {"ndcg@10": float(arr[:, 0].mean()), "recall@100": float(arr[:, 1].mean()),
                     "mrr@10": float(arr[:, 2].mean()), "queries": len(rows)}  # fmt: skip
    return out


def _hybrid_deep(searcher: Searcher, text: str) -> list:
    old = searcher.depth
    searcher.depth = 100
    try:
        return searcher.search(text, 100, "hybrid")
    finally:
        searcher.depth = old
