"""rag, the main path in one sitting: data → encoder → index → train → eval, then the tools around them.

    mlsd rag all                   the build path: help center → MiniLM as ONNX → hybrid index → reranker →
                                   held-out evaluation
    mlsd rag ask "how do I ..."    one answer with citations (the request path itself is answer.py)
    mlsd rag update --add FILE     change the index without re-embedding the rest
    mlsd rag serve | bench         the HTTP service (serve.py) and its load test
    mlsd rag cost                  what a hosted LLM generator would cost (arithmetic)

Each step reads the artifacts of the steps before it from <MLSD_DATA_DIR>/rag/<scale>/ (names in config.py) and
writes its own; a missing artifact is built first by the step that makes it. One scale: small.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rich.markup import escape

from infra.artifacts import Artifacts
from infra.bench.flags import bench_kwargs
from infra.bench.harness import RESULTS_DIR, run_bench
from infra.config import Scale
from infra.console import console, markdown_table, print_rows, print_values
from infra.serving import run_server
from infra.steps import Step, StepError, run_step
from infra.system import BenchSpec
from systems.rag_search.answer import AnswerConfig, RagPipeline, load_encoder
from systems.rag_search.beir import beir_eval, index_beir, tune_reranker
from systems.rag_search.config import (
    ANSWER_CONFIG,
    ARTICLES,
    ENCODER_FP32,
    ENCODER_INT8,
    EVAL,
    IN_DOMAIN_RERANKER,
    INDEX_DIR,
    INDEX_FILE,
    KB_DIR,
    QUESTIONS,
    RERANKER,
    TUNE,
    AskConfig,
    BenchConfig,
    CostConfig,
    DataConfig,
    EncoderConfig,
    EvalConfig,
    IndexConfig,
    ServeConfig,
    TrainConfig,
    TuneConfig,
    UpdateConfig,
)
from systems.rag_search.cost import GpuShape, LlmShape, serving_math
from systems.rag_search.data import generate_kb, load_questions, write_kb, write_tiny_beir
from systems.rag_search.documents import BeirDataset, load_beir, load_folder, read_article, write_beir
from systems.rag_search.evaluate import beir_table, evaluate_kb, table_rows, transpose
from systems.rag_search.generate import load_generator
from systems.rag_search.index import SearchIndex
from systems.rag_search.model import MiniLM, Reranker, export_onnx
from systems.rag_search.retrieve import Searcher
from systems.rag_search.serve import build_app
from systems.rag_search.train import log_to_mlflow, train_reranker

SCALES: tuple[Scale, ...] = ("small",)  # the help center has one size
BEIR_DIR = "kb/beir"  # --data beir:<folder>: the validated copy of the split the steps read


def data(cfg: DataConfig, art: Artifacts) -> None:
    """Generate the help center (Markdown articles, archived versions) and its evaluation questions (or --data)."""
    if cfg.data:
        return real_data(cfg, art)
    if cfg.scale not in SCALES:  # every other step reads what this one makes, so this is the one check
        raise StepError(
            f"rag has one scale, small (the help center is a fixed size); got --scale {cfg.scale}"
        )
    kb = generate_kb(cfg.seed)
    write_kb(kb, art.dir(KB_DIR))
    qs = kb.questions
    print_values("rag data", {
        "articles (current)": len(kb.current()), "article versions": len(kb.articles), "questions": len(qs),
        "unanswerable": sum(not q.answerable for q in qs), "held-out questions": sum(q.split == "heldout" for q in qs),
    })  # fmt: skip
    if cfg.beir_out:
        console.print(f"wrote a BEIR folder from the KB: {write_tiny_beir(cfg.beir_out, cfg.seed)}")


def real_data(cfg: DataConfig, art: Artifacts) -> None:
    """--data beir:<folder>: read the BEIR folder strictly and keep a copy of the split beside the artifacts."""
    folder = Path(cfg.data.partition(":")[2])
    with console.status(f"reading {folder}"):
        ds = load_beir(folder, cfg.beir_split)
    write_beir(art.dir(BEIR_DIR), ds, cfg.beir_split)
    art.dir(ARTICLES)  # the help center's articles: none here (the corpus is kb/beir/corpus.jsonl)
    # the judged queries stand in for the questions (the help center's eval set) so the steps' needs hold
    shutil.copy(art.path(BEIR_DIR) / "queries.jsonl", art.path(QUESTIONS))
    source = {
        "kind": "beir",
        "path": str(folder.resolve()),
        "split": cfg.beir_split,
        "documents": len(ds.corpus),
    }
    art.path("source.json").write_text(json.dumps(source, indent=2))
    print_values(f"rag data: BEIR {folder.name} ({cfg.beir_split}) -> {art.root}", {
        "documents": len(ds.corpus), "judged queries": len(ds.queries),
        "judgements": sum(len(r) for r in ds.qrels.values()),
    })  # fmt: skip


def _beir(art: Artifacts) -> BeirDataset:
    split = json.loads(art.require("source.json", "data").read_text())["split"]
    return load_beir(art.path(BEIR_DIR), split)


def encoder(cfg: EncoderConfig, art: Artifacts) -> None:
    """Export MiniLM from the installed package's weights to ONNX, fp32 and int8, and check both against PyTorch."""
    with console.status("exporting MiniLM to ONNX (fp32), then int8 (dynamic quantisation)"):
        parity = export_onnx(art.path(ENCODER_FP32), art.path(ENCODER_INT8))
    sizes = {
        f"{name} (MB)": round(art.path(name).stat().st_size / 1e6, 1) for name in (ENCODER_FP32, ENCODER_INT8)
    }
    print_values("rag encoder", {**parity, **sizes})


def _load_index(art: Artifacts) -> SearchIndex:
    art.require(INDEX_FILE, "index")
    return SearchIndex.load(art.dir(INDEX_DIR))


def index(cfg: IndexConfig, art: Artifacts) -> None:
    """Chunk the articles by section and index them: BM25, FAISS vectors, token and sentence embeddings."""
    minilm = load_encoder(art, cfg.encoder)
    if art.exists("source.json"):  # --data beir:<folder>: the corpus, in batches with progress
        search_index = index_beir(_beir(art), minilm)
        search_index.save(art.dir(INDEX_DIR))
        print_values("rag index (BEIR)", {"documents": len(_beir(art).corpus), "chunks": len(search_index),
                                          "encoder": minilm.name})  # fmt: skip
        return
    articles = load_folder(cfg.folder or art.require(ARTICLES, "data"))
    with console.status(f"embedding {len(articles)} articles with MiniLM ({minilm.name})"):
        search_index = SearchIndex(minilm.dim, minilm.name)
        chunks = search_index.add_articles(articles, minilm)
    search_index.save(art.dir(INDEX_DIR))
    print_values("rag index", {"articles": len(articles), "chunks": chunks, "encoder": minilm.name,
                               "index": str(art.dir(INDEX_DIR))})  # fmt: skip


def update(cfg: UpdateConfig, art: Artifacts) -> None:
    """Add, change or delete articles in the index, embedding only the changed articles' chunks."""
    search_index = _load_index(art)
    articles = [a for p in cfg.add for a in (load_folder(p) if p.is_dir() else [read_article(p)])]
    before = len(search_index)
    added = search_index.add_articles(articles, load_encoder(art, search_index.encoder)) if articles else 0
    deleted = sum(search_index.delete_article(a) for a in cfg.delete)
    search_index.save(art.dir(INDEX_DIR))
    print_values("rag update", {"chunks before": before, "chunks embedded": added, "chunks deleted": deleted,
                                "chunks after": len(search_index)})  # fmt: skip


def train(cfg: TrainConfig, art: Artifacts) -> None:
    """Train the LightGBM reranker on the tune split and choose the refusal threshold."""
    if art.exists("source.json"):  # BEIR has no training split here: transfer the support KB's reranker
        return transfer_reranker(art)
    tune = [q for q in load_questions(art.require(QUESTIONS, "data")) if q.split == "tune"]
    search_index = _load_index(art)
    searcher = Searcher(search_index, load_encoder(art, search_index.encoder))
    reranker, threshold, stats = train_reranker(searcher, tune, cfg.seed, progress=True)
    reranker.save(art.path(RERANKER))
    AnswerConfig(refuse_below=threshold).save(art.path(ANSWER_CONFIG))
    if cfg.mlflow:
        log_to_mlflow(stats)
    print_values("rag train (tune split)", stats)


def transfer_reranker(art: Artifacts) -> None:
    """Copy the reranker (and refusal threshold) trained on the help center, training it there if missing."""
    kb = Artifacts("rag", SCALES[0])
    if not (kb.exists(RERANKER) and kb.exists(ANSWER_CONFIG)):
        console.print("training the reranker on the support KB first (it is transferred to the BEIR corpus)")
        run_step(STEPS, "train", TrainConfig(scale=SCALES[0], mlflow=False), kb, console.print)
    for name in (RERANKER, ANSWER_CONFIG):
        shutil.copy(kb.path(name), art.path(name))
    print_values(
        "rag train (BEIR): reranker transferred",
        {"from": str(kb.path(RERANKER)), "to": str(art.path(RERANKER))},
    )


def tune(cfg: TuneConfig, art: Artifacts) -> None:
    """--data beir:<folder>: a reranker trained on the corpus's own train split, chosen on a validation part of it;
    prints the validation table, then the test split's rows (read once): zero-shot, transferred, in-domain."""
    source = json.loads(art.require("source.json", "data").read_text())
    train_ds = load_beir(Path(source["path"]), cfg.train_split)
    search_index = _load_index(art)
    searcher = Searcher(search_index, load_encoder(art, search_index.encoder))
    transferred = Reranker.load(art.require(RERANKER, "train"))
    model, validation, final = tune_reranker(searcher, train_ds, _beir(art), transferred, cfg.seed)
    model.save_model(str(art.path(IN_DOMAIN_RERANKER)))
    art.path(TUNE).write_text(json.dumps({"validation": validation, "test": final}, indent=2))
    name = Path(source["path"]).name
    _report({"validation": f"Validation: {name} {cfg.train_split} split, held-out queries (nDCG@10)",
             "test": f"Test: {name} {source['split']} split, read once (nDCG@10)"},
            {"validation": validation, "test": final}, None)  # fmt: skip


def evaluate(cfg: EvalConfig, art: Artifacts) -> None:
    """Retrieval per retriever and answers per generator on the held-out questions (or a BEIR folder)."""
    if art.exists("source.json"):  # --data beir:<folder>: every retriever on the index built from it
        ds = _beir(art)
        search_index = _load_index(art)
        reranker = Reranker.load(art.require(RERANKER, "train"))
        searcher = Searcher(search_index, load_encoder(art, search_index.encoder), reranker)
        results = {"beir": beir_eval(searcher, ds)}
        art.path(EVAL).write_text(json.dumps(results, indent=2))
        _report({"beir": f"BEIR {Path(cfg.data[5:]).name} ({cfg.beir_split}), {len(ds.corpus)} documents, {len(ds.queries)} queries"}, results, cfg.out)  # fmt: skip
        return
    if cfg.beir is not None:
        ds = load_beir(cfg.beir, cfg.beir_split)
        results = {"beir": beir_table(ds, MiniLM())}
        art.path(EVAL).write_text(json.dumps(results, indent=2))
        _report({"beir": f"BEIR {cfg.beir.name}, {len(ds.corpus)} documents"}, results, cfg.out)
        return
    pipe = RagPipeline.load(art)
    pipe.config.attribute = cfg.attribution
    if cfg.llm:
        with console.status("loading SmolLM2-135M (dequantising the GGUF)"):
            pipe.generators["smollm"] = load_generator("smollm")
    if cfg.openai_url:
        pipe.generators["openai"] = load_generator("openai", cfg.openai_url, cfg.openai_model)
    questions = [q for q in load_questions(art.require(QUESTIONS, "data")) if cfg.split in ("all", q.split)]
    questions = questions[: cfg.limit or None]
    results = evaluate_kb(pipe, questions, list(pipe.generators), cfg.llm_limit, cfg.llm_only)
    art.path(EVAL).write_text(json.dumps({**results, "split": cfg.split}, indent=2))
    titles = {"retrieval": f"Retrieval, split={cfg.split} (answerable questions)",
              "generation": f"Generation, split={cfg.split} (LLM rows: the first {cfg.llm_limit} questions)"}  # fmt: skip
    _report(titles, results, cfg.out)


def _report(titles: dict[str, str], results: dict[str, dict], out: Path | None) -> None:
    """Each table on the console (generation with one row per metric: many metrics, few generators) and, with
    --out, as Markdown with one row per retriever or generator (the shape DESIGN.md quotes)."""
    markdown = ""
    for name, table in results.items():
        columns, rows = table_rows(table, "generator" if name == "generation" else "retriever")
        markdown += markdown_table(titles[name], columns, rows) + "\n"
        if name == "generation":
            columns, rows = table_rows(transpose(table), "metric")
        print_rows(titles[name], columns, rows)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown)
        console.print(f"wrote {out}")


def ask(cfg: AskConfig, art: Artifacts) -> None:
    """Answer one question with inline citations, its sources, and the milliseconds of each stage."""
    pipe = RagPipeline.load(art)
    if cfg.generator != "extractive":
        pipe.generators[cfg.generator] = load_generator(cfg.generator, cfg.openai_url, cfg.openai_model)
    assert cfg.question  # AskConfig refuses an empty or missing question
    res = pipe.ask(cfg.question, generator=cfg.generator)
    console.print(f"[bold]{escape(res['answer'])}[/]")
    for s in res["sources"]:
        console.print(escape(f"  [{s['n']}] {s['title']} — {s['section']} (v{s['version']}) {s['url']}"))
    if res["dropped"]:
        console.print(f"[yellow]verifier dropped {len(res['dropped'])} sentence(s)[/]")
    print_values("stages (ms)", res["stages_ms"])


def serve(cfg: ServeConfig, art: Artifacts) -> None:
    """Serve /ask, /search and the page (at /) on --host:--port (MLSD_RAG_* settings choose the generators)."""
    run_server(build_app(RagPipeline.load(art) if cfg.data else None), cfg.host, cfg.port)


def bench(cfg: BenchConfig, art: Artifacts) -> int:
    """Load-test /ask and /search at a fixed rate beside the floor route; the SLO judges /ask p95."""
    env = {"MLSD_RAG_THREADS": "1", "MLSD_RAG_ACCESS_LOG": "0", "MLSD_SCALE": cfg.scale}
    extra: dict = {"generator": "extractive"}
    extra_md = ("`ask` and `search` are loaded at the same rate each (the rate above is per route); "
                "the SLO judges `ask` (extractive generator) on p95; the target is p99 <= 100 ms.")  # fmt: skip
    out = cfg.out
    if cfg.data:  # the server loads the BEIR index; locust asks the dataset's own queries
        ds = _beir(art)
        questions = art.path("bench_questions.json")
        questions.write_text(json.dumps(list(ds.queries.values())))
        env |= {"MLSD_RAG_VARIANT": art.root.name, "MLSD_RAG_QUESTIONS_FILE": str(questions)}
        extra |= {"data": cfg.data, "documents": len(ds.corpus), "queries": len(ds.queries)}
        extra_md += (
            f" Index: BEIR {Path(cfg.data[5:]).name}, {len(ds.corpus):,} documents; its queries are asked."
        )
        out = out or RESULTS_DIR / "rag" / "latest-beir"  # never overwrites the help center's report
    spec = BenchSpec(
        app="systems.rag_search.serve:build_app",
        locustfile="benchmarks/rag/locustfile.py",
        route="ask",
        slo_percentile="p95",
        slo_p99_ms=300.0,
        target_p99_ms=100.0,
        rate=cfg.rate,
        users=5,  # 2 on /ask, 2 on /search, 1 on /floor (fixed counts in the locustfile)
        thread_env=("MLSD_RAG_THREADS",),  # capped by the harness to the server's cores
        duration_s=cfg.duration,
        floor_rate=5.0,
        ready_timeout_s=300.0,
        env=env,
    )
    return run_bench("rag", spec, **{**bench_kwargs(cfg), "out_dir": out}, extra=extra, extra_md=extra_md)


def cost(cfg: CostConfig, art: Artifacts) -> None:
    """Serving math for a hosted LLM generator: KV cache, concurrency, decode throughput, $ per 1k answers."""
    llm, gpu = LlmShape(), GpuShape()
    figures = serving_math(llm, gpu, cfg.prompt_tokens, cfg.answer_tokens, cfg.batch)
    print_values(f"rag cost: {llm.name} on {gpu.name} (arithmetic)", figures)


SERVED = (INDEX_FILE, RERANKER, ANSWER_CONFIG)  # what answering a question reads

STEPS: list[Step[Any]] = [
    Step("data", data, DataConfig, makes=(ARTICLES, QUESTIONS), help=data.__doc__ or ""),
    Step("encoder", encoder, EncoderConfig, makes=(ENCODER_FP32, ENCODER_INT8), help=encoder.__doc__ or ""),
    Step("index", index, IndexConfig, needs=(ARTICLES, ENCODER_FP32, ENCODER_INT8), makes=(INDEX_FILE,),
         help=index.__doc__ or ""),
    Step("train", train, TrainConfig, needs=(QUESTIONS, INDEX_FILE), makes=(RERANKER, ANSWER_CONFIG),
         help=train.__doc__ or ""),
    Step("eval", evaluate, EvalConfig, needs=(QUESTIONS, *SERVED), makes=(EVAL,), help=evaluate.__doc__ or ""),
    Step("tune", tune, TuneConfig, needs=(INDEX_FILE, RERANKER), makes=(IN_DOMAIN_RERANKER,), in_all=False,
         help=tune.__doc__ or ""),
    Step("update", update, UpdateConfig, needs=(INDEX_FILE,), in_all=False, help=update.__doc__ or ""),
    Step("ask", ask, AskConfig, needs=SERVED, in_all=False, help=ask.__doc__ or ""),
    Step("serve", serve, ServeConfig, needs=SERVED, in_all=False, help=serve.__doc__ or ""),
    Step("bench", bench, BenchConfig, needs=SERVED, in_all=False, help=bench.__doc__ or ""),
    Step("cost", cost, CostConfig, in_all=False, help=cost.__doc__ or ""),
]  # fmt: skip
ALL_CONFIG = (
    EvalConfig  # `mlsd rag all` takes --data and the eval flags (the others' flags are their defaults)
)
