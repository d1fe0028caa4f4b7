"""Help-center documents and the formats they come in: Markdown and HTML articles, and BEIR folders.

An article is a title and `##` sections (what a help center page is); a section is the unit the evaluation set
calls an answer (`article_id#section-slug`) and the unit `index.py` chunks. Readers:

- Markdown: optional front matter (id, version, category, status), `# title`, `##`/`###` sections.
- HTML: `h1` is the title, `h2`/`h3` start sections; script, style and title text are skipped, and so is text a
  reader cannot see (`hidden`, `aria-hidden="true"`, `display:none`, `visibility:hidden`): hidden text is where
  an injected instruction hides, and what the page does not show the answer must not quote.
- A folder: regular files only (a symlink may point anywhere on the machine, so it is skipped); a file that
  cannot be read is named in a warning and skipped, so one bad file never aborts the whole ingestion.
- BEIR (Thakur et al. 2021): `corpus.jsonl` ({_id, title, text}), `queries.jsonl` ({_id, text}),
  `qrels/<split>.tsv` (query-id, corpus-id, score; a header line is optional).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from infra.steps import ConfigError

log = logging.getLogger("mlsd.rag")


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class Section:
    title: str
    body: str

    @property
    def slug(self) -> str:
        return slugify(self.title)


@dataclass
class Article:
    article_id: str
    version: int
    title: str
    category: str
    sections: list[Section]
    status: str = "current"  # "current" or "archived" (an older version kept in the help center)

    @property
    def url(self) -> str:
        return f"https://help.lumen.example/{self.article_id}"

    def to_markdown(self) -> str:
        """The article as `parse_markdown` reads it back (front matter, `# title`, `## section`s)."""
        head = f"---\nid: {self.article_id}\nversion: {self.version}\ncategory: {self.category}\nstatus: {self.status}\n---\n"
        body = "".join(f"\n## {s.title}\n\n{s.body}\n" for s in self.sections)
        return f"{head}# {self.title}\n{body}"


# ---------------------------------------------------------------------------------------------- Markdown
_FRONT = re.compile(r"^---\n(.*?)\n---\n", re.S)


def parse_markdown(text: str, fallback_id: str) -> Article:
    """One Markdown article: optional front matter (id, version, category, status), '# title', '## sections'."""
    meta: dict[str, str] = {}
    m = _FRONT.match(text)
    if m:
        for line in m.group(1).splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                meta[k.strip()] = v.strip()
        text = text[m.end() :]
    sections: list[Section] = []
    cur_lines: list[str] = []
    title, cur_title = fallback_id, None
    for line in text.splitlines():
        if line.startswith("# "):
            title = line[2:].strip()
        elif line.startswith("## ") or line.startswith("### "):
            if cur_title is not None or any(x.strip() for x in cur_lines):
                sections.append(
                    Section(cur_title or "Overview", " ".join(x.strip() for x in cur_lines if x.strip()))
                )
            cur_title, cur_lines = line.lstrip("#").strip(), []
        else:
            cur_lines.append(line)
    if cur_title is not None or any(x.strip() for x in cur_lines):
        sections.append(Section(cur_title or "Overview", " ".join(x.strip() for x in cur_lines if x.strip())))
    return Article(
        meta.get("id", fallback_id),
        int(meta.get("version", 1)),
        title,
        meta.get("category", "general"),
        sections,
        meta.get("status", "current"),
    )


# ---------------------------------------------------------------------------------------------- HTML
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_INVISIBLE_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)


def is_hidden(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    """An element a browser does not show: hidden, aria-hidden="true", display:none / visibility:hidden, template."""
    a = {k.lower(): (v or "") for k, v in attrs}
    return (
        tag == "template"
        or "hidden" in a
        or a.get("aria-hidden", "").strip().lower() == "true"
        or bool(_INVISIBLE_STYLE.search(a.get("style", "")))
    )


class _HtmlArticle(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[Section] = []
        self.buf: list[str] = []
        self.title, self.tag = "", ""
        self.cur: str | None = None
        self.hidden: list[str] = []  # open elements inside (and including) the outermost hidden one

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _VOID:
            return
        if self.hidden or is_hidden(tag, attrs):
            self.hidden.append(tag)
            return
        if tag in ("h1", "h2", "h3"):
            self._flush()
        self.tag = tag

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        pass  # <br/>, <img/>: no text

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.tag == "h1":
            self.title += data.strip()
        elif self.tag in ("h2", "h3"):
            self.cur = (self.cur or "") + data.strip()
        elif data.strip() and self.tag not in ("script", "style", "title"):
            self.buf.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        if self.hidden:
            if tag in self.hidden:  # close up to the matching tag (tolerates unclosed children)
                while self.hidden.pop() != tag:
                    pass
            return
        self.tag = "" if tag in ("h1", "h2", "h3") else self.tag

    def _flush(self) -> None:
        if self.buf:
            self.sections.append(Section(self.cur or "Overview", " ".join(self.buf)))
        self.buf = []
        self.cur = None


def parse_html(text: str, fallback_id: str) -> Article:
    p = _HtmlArticle()
    p.feed(text)
    p._flush()
    return Article(fallback_id, 1, p.title or fallback_id, "general", p.sections)


# ---------------------------------------------------------------------------------------------- files
ARTICLE_SUFFIXES = (".md", ".html", ".htm")


def read_article(path: Path) -> Article:
    """One article file; its id is the file name before `@` (`<id>@v<version>.md` or `<id>.md`)."""
    stem = path.stem.split("@")[0]
    text = path.read_text(encoding="utf-8")
    return parse_markdown(text, stem) if path.suffix == ".md" else parse_html(text, stem)


def load_folder(folder: Path) -> list[Article]:
    """Every *.md / *.html article in a folder, in file-name order. Symlinks are not followed; a file that
    cannot be read or parsed is named in a warning and skipped."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of articles")
    paths = sorted([*folder.glob("*.md"), *folder.glob("*.html"), *folder.glob("*.htm")])
    articles = []
    for p in paths:
        reason = skip_reason(p)
        if reason is None:
            try:
                articles.append(read_article(p))
                continue
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
        log.warning("skipped %s: %s", p, reason)
    return articles


def skip_reason(path: Path) -> str | None:
    """Why ingestion will not read this path (None: it will): a symlink, or not a regular file."""
    if path.is_symlink():
        return "a symlink (not followed: it may point outside the knowledge base)"
    if not path.is_file():
        return "not a regular file"
    return None


# ---------------------------------------------------------------------------------------------- BEIR
@dataclass
class BeirDataset:
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> relevance


class BeirFormatError(ConfigError):
    """A BEIR file not in its format: one line naming the file, the row and what was expected (exit 2)."""


def _jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """Every row of a JSON-lines file, each an object with `fields` (strings; _id may be a number)."""
    rows = []
    with path.open(encoding="utf-8", errors="strict") as f:
        try:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise BeirFormatError(
                        f"{path}: row {n}: expected a JSON object, got {line[:60]!r}"
                    ) from None
                if not isinstance(row, dict) or any(k not in row for k in fields):
                    raise BeirFormatError(
                        f"{path}: row {n}: expected a JSON object with {', '.join(fields)}, got {line[:60]!r}"
                    )
                if row["_id"] in (None, "") or not isinstance(row.get("text", ""), str):
                    raise BeirFormatError(f"{path}: row {n}: expected a non-empty _id and a string text")
                rows.append(row)
        except UnicodeDecodeError as exc:
            raise BeirFormatError(f"{path}: byte {exc.start}: expected UTF-8 text") from None
    if not rows:
        raise BeirFormatError(
            f"{path}: row 1: expected JSON lines with {', '.join(fields)}, got an empty file"
        )
    return rows


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    """qrels/<split>.tsv: `query-id<TAB>corpus-id<TAB>score`, a header line optional."""
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split("\t")
        if n == 1 and parts[0] in ("query-id", "query_id", "qid"):
            continue
        if not line.strip():
            continue
        if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].strip().lstrip("-").isdigit():
            raise BeirFormatError(
                f"{path}: row {n}: expected query-id<TAB>corpus-id<TAB>integer score, got {line[:60]!r}"
            )
        if int(parts[2]) > 0:
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    if not qrels:
        raise BeirFormatError(f"{path}: row 1: expected at least one judgement with a score above 0")
    return qrels


def load_beir(folder: Path, split: str = "test") -> BeirDataset:
    """A BEIR folder: corpus.jsonl ({_id,title,text}), queries.jsonl ({_id,text}), qrels/<split>.tsv.

    Strict: a row not in its format is a BeirFormatError naming the file and the row. Queries without
    judgements are dropped (BEIR ships every split's queries in one file); a judgement naming a document or
    query the folder does not have is an error, not a silently smaller benchmark.
    """
    for need in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / need).exists():
            raise BeirFormatError(
                f"{folder / need} is missing; a BEIR folder has corpus.jsonl, queries.jsonl, qrels/<split>.tsv"
            )
    corpus = {str(d["_id"]): (str(d.get("title") or ""), d["text"]) for d in _jsonl(folder / "corpus.jsonl", ("_id", "text"))}  # fmt: skip
    queries = {str(d["_id"]): d["text"] for d in _jsonl(folder / "queries.jsonl", ("_id", "text"))}
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        found = sorted((folder / "qrels").glob("*.tsv")) if (folder / "qrels").exists() else []
        raise BeirFormatError(
            f"{qrels_path} is missing" + (f"; this folder has {', '.join(p.stem for p in found)} (--beir-split)" if found else "")
        )  # fmt: skip
    qrels = _qrels(qrels_path)
    for qid, rels in qrels.items():
        if qid not in queries:
            raise BeirFormatError(f"{qrels_path}: query-id {qid!r} is not in {folder / 'queries.jsonl'}")
        missing = next((d for d in rels if d not in corpus), None)
        if missing is not None:
            raise BeirFormatError(f"{qrels_path}: corpus-id {missing!r} is not in {folder / 'corpus.jsonl'}")
    return BeirDataset(corpus, {q: t for q, t in queries.items() if q in qrels}, qrels)


def write_beir(folder: Path, ds: BeirDataset, split: str = "test") -> Path:
    """The BEIR folder `load_beir` reads (qrels with a header line)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for doc_id, (title, text) in ds.corpus.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for qid, text in ds.queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with (folder / "qrels" / f"{split}.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, rels in ds.qrels.items():
            for doc_id, rel in rels.items():
                f.write(f"{qid}\t{doc_id}\t{rel}\n")
    return folder
