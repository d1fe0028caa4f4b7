"""A generated BEIR folder of abstract-length documents, to time `mlsd rag index --data` at BEIR scale.

    python -m benchmarks.rag.beir_corpus --docs 5000 --out /tmp/beir5k
    time mlsd rag index --data beir:/tmp/beir5k

The documents read like abstracts to the tokenizer (10 sentences of 14-26 English words from a biomedical
vocabulary, ~200 words: SciFact's and NFCorpus's abstracts average about that), so the window count and the
tokens per window are those of a real corpus; the words are random, so this times indexing and says nothing
about retrieval quality. One query per topic, judged against that topic's documents, makes the folder valid.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

_WORDS = (
    "patients cells protein expression treatment cohort trial randomized placebo significantly increased "
    "decreased associated risk disease mice human receptor pathway signalling inflammation tumour cancer "
    "mortality survival dose response clinical outcomes analysis baseline follow-up incidence prevalence "
    "vitamin supplementation diet obesity insulin glucose metabolism mitochondrial oxidative stress apoptosis "
    "gene mutation variant genome transcription regulation kinase inhibitor antibody infection virus bacterial "
    "immune lymphocytes cytokine neurons brain cognitive memory sleep cardiovascular blood pressure hypertension "
    "stroke kidney liver lung smoking exposure population women children elderly adults years months weeks "
    "measured compared observed reported suggest indicate demonstrate evidence data model study results effect "
    "higher lower levels among between during after before within with without the of and in to a for by on"
)
VOCABULARY = _WORDS.split()
TOPICS = 50


def abstract(rng: np.random.Generator, topic_words: list[str]) -> str:
    sentences = []
    for _ in range(10):
        words = list(rng.choice(VOCABULARY, int(rng.integers(14, 27))))
        words[int(rng.integers(0, len(words)))] = str(rng.choice(topic_words))
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def write_corpus(folder: Path, docs: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    topics = [[f"topic{t}marker", f"compound{t}"] for t in range(TOPICS)]
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for d in range(docs):
            row = {"_id": f"d{d}", "title": f"Study {d} of compound{d % TOPICS}", "text": abstract(rng, topics[d % TOPICS])}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for t in range(TOPICS):
            f.write(json.dumps({"_id": f"q{t}", "text": f"effect of compound{t} topic{t}marker"}) + "\n")
    qrels = ["query-id\tcorpus-id\tscore"] + [f"q{d % TOPICS}\td{d}\t1" for d in range(docs)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000, help="documents in the corpus (default: 5000)")
    parser.add_argument("--out", type=Path, required=True, help="the BEIR folder to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = write_corpus(args.out, args.docs, args.seed)
    words = [len(json.loads(line)["text"].split()) for line in (folder / "corpus.jsonl").open()]
    print(f"wrote {folder}: {len(words):,} documents, {np.mean(words):.0f} words each on average")


if __name__ == "__main__":
    main()
