"""Ingestion: structure-aware chunking, metadata, and a hybrid index (BM25 + FAISS + token embeddings)
that takes incremental updates: add, change or delete an article without re-embedding the rest.

A chunk is one section (split into overlapping word windows when long), prefixed with its article title
and section heading so that both retrievers see the context. Deleted chunks leave FAISS (remove_ids) and
the BM25 index and are never returned again. A new version of an article marks the older versions
archived (metadata only) and embeds just the new version's chunks.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import bm25s
import faiss
import numpy as np

from infra.artifacts import atomic_write
from systems.rag_search.documents import Article, slugify
from systems.rag_search.model import MiniLM

MANIFEST = "manifest.json"  # written last: it names the files of the current generation
INDEX_FORMAT = 2  # 1 was a pickle
_INDEX_FILES = re.compile(
    r"^\.?(dense-|chunks-|emb-)\w+\.(faiss|json|npz)(\.\w+\.tmp)?$|^\.manifest\.json\.\w+\.tmp$"
    r"|^index\.pkl$|^dense\.faiss$"
)  # what save() writes (and older versions wrote): the only files it ever deletes


class CorruptIndex(RuntimeError):
    """An index folder whose files cannot be read back (a truncated copy, another version, a disk error)."""


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text.strip()) if s.strip()]


@dataclass
class Chunk:
    chunk_id: str  # "<article>@v<version>#<section-slug>[~k]"
    article_id: str
    version: int
    title: str
    section: str
    anchor: str  # url#anchor a reader can click
    status: str  # current | archived
    text: str  # the section text (what answers quote)
    sentences: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """What the evaluation set calls a section: article#slug (any window of it)."""
        return f"{self.article_id}#{self.anchor.rsplit('#', 1)[-1]}"

    @property
    def indexed_text(self) -> str:
        return f"{self.title}. {self.section}. {self.text}"


def sentence_spans(chunk: Chunk) -> list[tuple[int, int]]:
    """The character span of each of the chunk's sentences inside its indexed_text (they appear in order)."""
    text, spans = chunk.indexed_text, []
    pos = len(text) - len(chunk.text)  # indexed_text ends with the chunk's text
    for s in chunk.sentences:
        start = text.index(s, pos)
        spans.append((start, start + len(s)))
        pos = start + len(s)
    return spans


@dataclass
class ChunkingConfig:
    max_words: int = 120  # a section longer than this is split into windows
    overlap_words: int = 30  # words repeated between consecutive windows


def chunk_article(a: Article, cfg: ChunkingConfig = ChunkingConfig()) -> list[Chunk]:
    """One chunk per section (by heading); long sections become overlapping windows of sentences."""
    out = []
    for s in a.sections:
        slug = slugify(s.title) or "overview"
        anchor = f"https://help.lumen.example/{a.article_id}#{slug}"
        words = s.body.split()
        if len(words) <= cfg.max_words:
            windows = [s.body]
        else:
            step = cfg.max_words - cfg.overlap_words
            windows = [
                " ".join(words[i : i + cfg.max_words]) for i in range(0, len(words) - cfg.overlap_words, step)
            ]
        for k, text in enumerate(windows):
            suffix = f"~{k}" if len(windows) > 1 else ""
            out.append(
                Chunk(f"{a.article_id}@v{a.version}#{slug}{suffix}", a.article_id, a.version, a.title, s.title,
                      anchor, a.status, text, split_sentences(text))
            )  # fmt: skip
    return out


class SearchIndex:
    """Chunks plus three views of them: BM25 (bm25s), dense vectors (FAISS IndexIDMap), token embeddings."""

    def __init__(self, dim: int = 384, encoder: str = "torch") -> None:
        self.dim = dim
        self.encoder = encoder  # how MiniLM ran for these vectors (model.ENCODERS): queries must use the same
        self.chunks: dict[int, Chunk] = {}  # faiss id -> chunk (live chunks only)
        self.token_emb: dict[int, np.ndarray] = {}  # id -> (L, D) float16, for late interaction
        self.sent_emb: dict[int, np.ndarray] = {}  # id -> (S, D) float32, one row per chunk sentence
        self.faiss: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))  # ids: the chunk ids
        self.next_id = 0
        self.bm25: bm25s.BM25 | None = None
        self.bm25_ids: np.ndarray = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ updates
    def add_articles(
        self, articles: list[Article], encoder: MiniLM, sentences_in_context: bool = False, bm25: bool = True
    ) -> int:
        """Embed and add the chunks of these articles (replacing any chunks of the same article@version).

        The answer's sentences are embedded alone (a second pass over every chunk's text: the help center's
        verifier threshold was tuned on those), or, with `sentences_in_context`, pooled from the chunk's own
        forward pass (one pass: what makes a BEIR corpus of thousands of abstracts index in minutes). A bulk
        load passes bm25=False and calls rebuild_bm25() once at the end.
        """
        chunks = [c for a in articles for c in chunk_article(a)]
        replaced = {(a.article_id, a.version) for a in articles}
        self._remove(lambda c: (c.article_id, c.version) in replaced)
        if not chunks:
            return 0
        ids = np.arange(self.next_id, self.next_id + len(chunks), dtype=np.int64)
        self.next_id += len(chunks)
        texts = [c.indexed_text for c in chunks]
        if sentences_in_context:
            vecs, toks, sent_emb = encoder.encode_with_sentences(texts, [sentence_spans(c) for c in chunks])
        else:
            vecs, toks = encoder.encode(texts, max_length=256, batch_size=32, tokens=True)
            sents = [s for c in chunks for s in c.sentences]
            sent_vecs, _ = encoder.encode(sents, max_length=96) if sents else (np.zeros((0, self.dim)), [])
            sent_emb = np.split(sent_vecs, np.cumsum([len(c.sentences) for c in chunks])[:-1])
        self.faiss.add_with_ids(vecs, ids)
        for i, c, t, e in zip(ids, chunks, toks, sent_emb, strict=True):
            self.chunks[int(i)] = c
            self.token_emb[int(i)] = t
            self.sent_emb[int(i)] = e
        self._refresh_status()
        if bm25:
            self.rebuild_bm25()
        return len(chunks)

    def delete_article(self, article_id: str) -> int:
        """Remove every version of an article: it is never retrieved or cited again."""
        n = self._remove(lambda c: c.article_id == article_id)
        self._refresh_status()
        self.rebuild_bm25()
        return n

    def _remove(self, pred: Callable[[Chunk], bool]) -> int:
        gone = [i for i, c in self.chunks.items() if pred(c)]
        if gone:
            # faiss's stub lists only remove_ids(IDSelector); its Python wrapper also takes an int64 id array
            self.faiss.remove_ids(np.array(gone, dtype=np.int64))  # type: ignore[arg-type]
            for i in gone:
                del self.chunks[i], self.token_emb[i], self.sent_emb[i]
        return len(gone)

    def _refresh_status(self) -> None:
        """The newest version of each article is current; older versions are archived."""
        latest: dict[str, int] = {}
        for c in self.chunks.values():
            latest[c.article_id] = max(latest.get(c.article_id, 0), c.version)
        for c in self.chunks.values():
            if c.version < latest[c.article_id]:
                c.status = "archived"

    def rebuild_bm25(self) -> None:
        """BM25 over the live chunks (a few ms for thousands of chunks; embeddings are what is expensive)."""
        self.bm25_ids = np.array(sorted(self.chunks), dtype=np.int64)
        self.bm25 = None
        if len(self.bm25_ids):
            retriever = bm25s.BM25()
            corpus = [self.chunks[int(i)].indexed_text for i in self.bm25_ids]
            retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
            self.bm25 = retriever

    # ------------------------------------------------------------------ queries
    def search_bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        if self.bm25 is None:
            return []
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        k = min(k, len(self.bm25_ids))
        docs, scores = self.bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [(int(self.bm25_ids[d]), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def search_dense(self, query_vec: np.ndarray, k: int) -> list[tuple[int, float]]:
        if self.faiss.ntotal == 0:
            return []
        scores, ids = self.faiss.search(
            query_vec.reshape(1, -1).astype(np.float32), min(k, self.faiss.ntotal)
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def __len__(self) -> int:
        return len(self.chunks)

    # ------------------------------------------------------------------ storage
    def save(self, folder: Path) -> None:
        """Write this index so that a crash at any point leaves the previous one loadable, in formats that hold
        data only (FAISS's own format, .npz without pickle, JSON; never pickle, which runs code on load).

        The files of one save share a generation id in their names; `manifest.json`, written last and atomically
        (infra.artifacts.atomic_write), names them. Until the manifest is replaced the old generation is what
        loads; once it is, the old files are removed. Guarded by tests/campaign/test_rag_faults.py."""
        folder.mkdir(parents=True, exist_ok=True)
        gen = uuid.uuid4().hex[:12]
        files = {
            "dense": f"dense-{gen}.faiss",
            "chunks": f"chunks-{gen}.json",
            "embeddings": f"emb-{gen}.npz",
        }
        with atomic_write(folder / files["dense"]) as f:
            f.write(faiss.serialize_index(self.faiss).tobytes())
        ids = sorted(self.chunks)
        with atomic_write(folder / files["chunks"], "w") as f:
            json.dump([{"id": i, **asdict(self.chunks[i])} for i in ids], f)
        tok = [self.token_emb[i] for i in ids]
        sent = [self.sent_emb[i] for i in ids]
        with atomic_write(folder / files["embeddings"]) as f:
            np.savez(
                f,
                ids=np.array(ids, dtype=np.int64),
                token_emb=np.concatenate(tok).astype(np.float16)
                if tok
                else np.zeros((0, self.dim), np.float16),
                token_len=np.array([len(t) for t in tok], dtype=np.int64),
                sent_emb=np.concatenate(sent).astype(np.float32)
                if sent
                else np.zeros((0, self.dim), np.float32),
                sent_len=np.array([len(s) for s in sent], dtype=np.int64),
            )
        manifest = {"format": INDEX_FORMAT, "dim": self.dim, "encoder": self.encoder, "next_id": self.next_id, "files": files,
                    "chunks": len(self.chunks), "articles": len({c.article_id for c in self.chunks.values()})}  # fmt: skip
        with atomic_write(folder / MANIFEST, "w") as f:
            json.dump(manifest, f)
        keep = set(files.values()) | {MANIFEST}
        for old in folder.iterdir():  # the previous generation, a killed save's leftovers, an old index.pkl
            if old.is_file() and old.name not in keep and _INDEX_FILES.match(old.name):
                old.unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: Path) -> SearchIndex:
        """The index `save` wrote; a missing or unreadable file is a CorruptIndex naming it."""
        if not (folder / MANIFEST).exists():
            raise FileNotFoundError(f"no index in {folder}; run `mlsd rag index`")
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            if manifest.get("format") != INDEX_FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}, expected {INDEX_FORMAT}; rebuild it")
            files = manifest["files"]
            idx = cls(int(manifest["dim"]), manifest.get("encoder", "torch"))  # older indexes: PyTorch
            idx.next_id = int(manifest["next_id"])
            dense = (folder / files["dense"]).read_bytes()
            idx.faiss = faiss.deserialize_index(np.frombuffer(dense, dtype=np.uint8))
            chunks = json.loads((folder / files["chunks"]).read_text())
            with np.load(folder / files["embeddings"], allow_pickle=False) as emb:
                ids = emb["ids"].tolist()
                token_emb = np.split(emb["token_emb"], np.cumsum(emb["token_len"])[:-1])
                sent_emb = np.split(emb["sent_emb"], np.cumsum(emb["sent_len"])[:-1])
            if [c["id"] for c in chunks] != ids or idx.faiss.ntotal != len(ids):
                raise ValueError("chunks, embeddings and vectors disagree")
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise CorruptIndex(f"the index in {folder} cannot be read ({type(exc).__name__}: {exc}); "
                               "rebuild it with `mlsd rag index`") from exc  # fmt: skip
        idx.chunks = {int(c.pop("id")): Chunk(**c) for c in chunks}
        idx.token_emb = {i: t for i, t in zip(ids, token_emb, strict=True)} if ids else {}
        idx.sent_emb = {i: s for i, s in zip(ids, sent_emb, strict=True)} if ids else {}
        idx.rebuild_bm25()
        return idx
