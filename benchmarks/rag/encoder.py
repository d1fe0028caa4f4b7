"""MiniLM three ways (PyTorch, ONNX Runtime fp32, int8): documents/s as indexing runs it, and the query
embedding's latency as /ask runs it (one question alone, one thread: MLSD_RAG_THREADS=1).

    python -m benchmarks.rag.encoder --beir /work/data/scifact --docs 256 --queries 200

Indexing is `encode_with_sentences` over the corpus's first --docs documents chunked as `mlsd rag index --data`
chunks them (windows of 120 words), batches of 32, --threads threads; it reports wall and CPU seconds (on a
shared machine CPU time is the figure other jobs do not move). The queries are the folder's own, embedded one
at a time as `Searcher.embed` does (64 tokens, sentence vector and token vectors). The load average is printed
beside every row: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from infra.console import print_rows
from systems.rag_search.beir import beir_articles
from systems.rag_search.documents import load_beir
from systems.rag_search.index import chunk_article, sentence_spans
from systems.rag_search.model import MiniLM, export_onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--beir", type=Path, required=True, help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    ap.add_argument("--split", default="test")
    ap.add_argument("--docs", type=int, default=256, help="documents to embed (indexing throughput)")
    ap.add_argument("--queries", type=int, default=200, help="queries to embed one at a time (latency)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for indexing")
    args = ap.parse_args()
    ds = load_beir(args.beir, args.split)
    chunks = [c for a in beir_articles(ds)[: args.docs] for c in chunk_article(a)]
    texts, spans = [c.indexed_text for c in chunks], [sentence_spans(c) for c in chunks]
    queries = list(ds.queries.values())[: args.queries]
    with tempfile.TemporaryDirectory() as tmp:
        files = {"onnx": Path(tmp) / "minilm-fp32.onnx", "onnx-int8": Path(tmp) / "minilm-int8.onnx"}
        export_onnx(files["onnx"], files["onnx-int8"])
        rows = []
        for name in ("torch", "onnx", "onnx-int8"):
            onnx = files.get(name)
            encoder = MiniLM(threads=args.threads, onnx=onnx, name=name)
            encoder.encode_with_sentences(texts[:32], spans[:32])  # warm-up
            wall, cpu = time.perf_counter(), time.process_time()
            encoder.encode_with_sentences(texts, spans)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            server = MiniLM(threads=1, onnx=onnx, name=name)
            for q in queries[:10]:
                server.encode([q], max_length=64, tokens=True)
            ms = []
            for q in queries:
                t = time.perf_counter()
                server.encode([q], max_length=64, tokens=True)
                ms.append((time.perf_counter() - t) * 1e3)
            rows.append([name, len(chunks), round(args.docs / wall, 1), round(cpu / args.docs, 3),
                         round(float(np.percentile(ms, 50)), 1), round(float(np.percentile(ms, 99)), 1),
                         " / ".join(f"{x:.1f}" for x in os.getloadavg())])  # fmt: skip
    print_rows(
        f"MiniLM on {args.beir.name}: {args.docs} documents ({args.threads} threads), {len(queries)} queries (1 thread)",
        [
            "encoder",
            "windows",
            "docs/s (wall)",
            "CPU s / doc",
            "query p50 ms",
            "query p99 ms",
            "load 1/5/15 min",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
