"""MiniLM with round-to-nearest int8 / int4 weights on the help center: dense and hybrid retrieval on the held-out
questions, the task `mlsd rag eval` scores (its fp32 rows: dense Recall@5 0.767, hybrid 0.890).

    python -m benchmarks.rag.int4

The rag system's own KB (`generate_kb`, seed 0, written and read back as `mlsd rag data` / `index` do), the
PyTorch encoder with every Linear weight replaced by its reconstruction (`fundamentals.int4`), a fresh index per
scheme, `retrieval_table` over the held-out answerable questions. Deterministic: no timing is reported.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from fundamentals.int4 import SCHEMES, quantize_linears
from infra.console import print_rows
from systems.rag_search.data import generate_kb, write_kb
from systems.rag_search.documents import load_folder
from systems.rag_search.evaluate import retrieval_table
from systems.rag_search.index import SearchIndex
from systems.rag_search.model import MiniLM
from systems.rag_search.retrieve import Searcher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["dense", "hybrid"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    kb = generate_kb(0)
    with tempfile.TemporaryDirectory() as tmp:
        articles = load_folder(write_kb(kb, Path(tmp)))
    questions = [q for q in kb.questions if q.split == "heldout"]
    encoder = MiniLM(threads=1, onnx=None)
    fp32 = encoder.model
    rows = []
    for name, bits, group in (("fp32", 32, None), *SCHEMES):
        encoder.model = fp32 if bits == 32 else quantize_linears(fp32, bits, group).model
        index = SearchIndex(encoder.dim, encoder.name)
        index.add_articles(articles, encoder)
        table = retrieval_table(Searcher(index, encoder), questions, tuple(args.modes))
        rows.append([name, *(f"{table[m]['recall@5']:.3f}" for m in args.modes),
                     *(f"{table[m]['ndcg@10']:.3f}" for m in args.modes)])  # fmt: skip
    print_rows(
        f"MiniLM weights by scheme: help-center retrieval, {table[args.modes[0]]['questions']} held-out questions",
        ("scheme", *(f"{m} Recall@5" for m in args.modes), *(f"{m} nDCG@10" for m in args.modes)),
        rows,
    )


if __name__ == "__main__":
    main()
