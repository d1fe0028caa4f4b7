"""`mlsd rag <step>`: data → index → train → serve / ask / eval → bench; `update` adds, changes or deletes articles."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from infra.cli import OneLineParser

STEPS = ("data", "index", "update", "train", "serve", "ask", "eval", "cost", "bench")


def _console():  # noqa: ANN202
    from rich.console import Console

    return Console()


def _table(title: str, rows: dict[str, dict], cols: list[str] | None = None):  # noqa: ANN202
    from rich.table import Table

    cols = cols or list(next(iter(rows.values())).keys())
    t = Table(title=title)
    t.add_column("")
    for c in cols:
        t.add_column(c, justify="right")
    for name, r in rows.items():
        t.add_row(name, *[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    return t


# ---------------------------------------------------------------------------------------------- steps
def step_data(seed: int) -> dict:
    from systems.rag_search.data import generate_kb, write_kb
    from systems.rag_search.pipeline import artifacts

    kb = generate_kb(seed)
    write_kb(kb, artifacts()["kb"])
    qs = kb.questions
    return {"articles (current)": len(kb.current()), "article versions": len(kb.articles), "questions": len(qs),
            "unanswerable": sum(not q.answerable for q in qs), "held-out questions": sum(q.split == "heldout" for q in qs)}  # fmt: skip


def step_index(folder: Path | None) -> dict:
    from systems.rag_search.data import load_folder
    from systems.rag_search.index import SearchIndex
    from systems.rag_search.model import MiniLM
    from systems.rag_search.pipeline import artifacts

    paths = artifacts()
    folder = folder or paths["articles"]
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; run `mlsd rag data` or pass --folder DIR")
    articles = load_folder(folder)
    with _console().status(f"embedding {len(articles)} articles with MiniLM"):
        index = SearchIndex()
        n = index.add_articles(articles, MiniLM())
    index.save(paths["index"])
    return {"articles": len(articles), "chunks": n, "index": str(paths["index"])}


def step_update(add: list[Path], delete: list[str]) -> dict:
    from systems.rag_search.data import load_folder, parse_html, parse_markdown
    from systems.rag_search.index import SearchIndex
    from systems.rag_search.model import MiniLM
    from systems.rag_search.pipeline import artifacts

    paths = artifacts()
    index = SearchIndex.load(paths["index"])
    articles = []
    for p in add:
        if p.is_dir():
            articles += load_folder(p)
        elif p.exists():
            stem = p.stem.split("@")[0]
            articles.append(
                parse_markdown(p.read_text(), stem) if p.suffix == ".md" else parse_html(p.read_text(), stem)
            )
        else:
            raise FileNotFoundError(f"{p} does not exist")
    before = len(index)
    added = index.add_articles(articles, MiniLM()) if articles else 0
    deleted = sum(index.delete_article(a) for a in delete)
    index.save(paths["index"])
    return {
        "chunks before": before,
        "chunks embedded": added,
        "chunks deleted": deleted,
        "chunks after": len(index),
    }


def step_train(seed: int) -> dict:
    from systems.rag_search.data import load_questions
    from systems.rag_search.index import SearchIndex
    from systems.rag_search.model import MiniLM
    from systems.rag_search.pipeline import PipelineConfig, artifacts
    from systems.rag_search.retrieve import Searcher
    from systems.rag_search.train import train_reranker

    paths = artifacts()
    tune = [q for q in load_questions(paths["questions"]) if q.split == "tune"]
    searcher = Searcher(SearchIndex.load(paths["index"]), MiniLM())
    model, threshold, stats = train_reranker(searcher, tune, seed, progress=True)
    paths["model"].mkdir(parents=True, exist_ok=True)
    model.save(paths["model"] / "reranker.txt")
    PipelineConfig(refuse_below=threshold).save(paths["model"])
    _log_mlflow(stats)
    return stats


def _log_mlflow(stats: dict) -> None:
    """Log the reranker run to MLflow when it is reachable; the model file on disk is what serving reads."""
    try:
        import mlflow

        from infra.config import get_settings

        mlflow.set_tracking_uri(get_settings().tracking_uri)
        mlflow.set_experiment("rag_search")
        with mlflow.start_run(run_name="reranker"):
            mlflow.log_metrics({k: float(v) for k, v in stats.items()})
    except Exception as exc:  # tracking is optional here; say so rather than fail the step
        print(f"note: MLflow logging skipped ({type(exc).__name__}: {exc})", file=sys.stderr)


def bootstrap(seed: int = 0) -> None:
    """Build whatever is missing: data, index, reranker."""
    from systems.rag_search.pipeline import artifacts

    paths = artifacts()
    if not paths["questions"].exists():
        _console().print(step_data(seed))
    if not (paths["index"] / "index.pkl").exists():
        _console().print(step_index(None))
    if not (paths["model"] / "reranker.txt").exists():
        _console().print(step_train(seed))


def step_eval(args) -> tuple[dict, str]:  # noqa: ANN001
    from systems.rag_search.data import load_beir, load_questions
    from systems.rag_search.evaluate import beir_table, generation_table, retrieval_table
    from systems.rag_search.model import MiniLM

    if args.beir:
        ds = load_beir(args.beir, args.beir_split)
        res = beir_table(ds, MiniLM())
        return {"beir": res}, _md_table(
            f"BEIR {args.beir.name}: {len(ds.queries)} queries, {len(ds.corpus)} docs", res
        )
    from systems.rag_search.pipeline import RagPipeline, artifacts

    bootstrap(args.seed)
    pipe = RagPipeline.load()
    questions = [
        q for q in load_questions(artifacts()["questions"]) if args.split == "all" or q.split == args.split
    ]
    if args.limit:
        questions = questions[: args.limit]
    pipe.config.attribute = not args.no_attribution
    gens = ["extractive"]
    if args.llm:
        from systems.rag_search.generate import SmolLMGenerator

        with _console().status("loading SmolLM2-135M (dequantising the GGUF)"):
            pipe.generators["smollm"] = SmolLMGenerator()
        gens.append("smollm")
    if args.openai_url:
        from systems.rag_search.generate import OpenAIGenerator

        pipe.generators["openai"] = OpenAIGenerator(args.openai_url, args.openai_model)
        gens.append("openai")
    if (
        args.llm_only
    ):  # the LLM rows alone, on the first --llm-limit questions (the extractive row beside them)
        sub = questions[: args.llm_limit]
        generation = generation_table(pipe, sub, ["extractive", *gens[1:]], pipe.encoder)
        title = f"Generation, split={args.split}, first {len(sub)} questions ({sum(q.answerable for q in sub)} answerable)"
        return {"generation": generation, "split": args.split}, _md_table(title, generation)
    retrieval = retrieval_table(pipe.searcher, questions)
    generation = generation_table(pipe, questions, ["extractive"], pipe.encoder)
    if len(gens) > 1:  # the LLMs are slow on CPU: score them on the first --llm-limit questions only
        sub = questions[: args.llm_limit]
        generation.update(generation_table(pipe, sub, gens[1:], pipe.encoder))
    n_ans = sum(q.answerable for q in questions)
    md = (_md_table(f"Retrieval, split={args.split}, {n_ans} answerable questions", retrieval)
          + "\n" + _md_table(f"Generation, split={args.split} ({len(questions)} questions; LLM rows on the first {args.llm_limit})", generation))  # fmt: skip
    return {"retrieval": retrieval, "generation": generation, "split": args.split}, md


def _md_table(title: str, rows: dict[str, dict]) -> str:
    cols = list(next(iter(rows.values())).keys())
    lines = [f"### {title}", "", "| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, r in rows.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values())
            + " |"
        )
    return "\n".join(lines) + "\n"


def step_bench(args) -> int:  # noqa: ANN001
    from infra.bench.harness import run_bench
    from infra.system import BenchSpec

    bootstrap(args.seed)
    spec = BenchSpec(
        app="systems.rag_search.serve:build_app",
        locustfile="benchmarks/rag/locustfile.py",
        route="ask",
        slo_percentile="p95",
        slo_p99_ms=300.0,
        target_p99_ms=100.0,
        rate=args.rate,
        users=5,  # 2 on /ask, 2 on /search, 1 on /floor (fixed counts in the locustfile)
        duration_s=args.duration,
        floor_rate=5.0,
        ready_timeout_s=300.0,
        env={"MLSD_RAG_THREADS": "1", "MLSD_RAG_ACCESS_LOG": "0"},
    )
    extra_md = ("`ask` and `search` are loaded at the same rate each (the rate above is per route); "
                "the SLO judges `ask` (extractive generator) on p95; the target is p99 <= 100 ms.")  # fmt: skip
    return run_bench(
        "rag",
        spec,
        duration_s=args.duration,
        rate=args.rate,
        extra={"generator": "extractive"},
        extra_md=extra_md,
    )


# ---------------------------------------------------------------------------------------------- entry
def main(argv: list[str]) -> int:
    p = OneLineParser(prog="mlsd rag", description=__doc__)
    p.add_argument("step", choices=STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folder", type=Path, default=None, help="index: a folder of Markdown/HTML articles")
    p.add_argument(
        "--add",
        type=Path,
        action="append",
        default=[],
        help="update: an article file or folder to add/change",
    )
    p.add_argument("--delete", action="append", default=[], help="update: an article id to delete")
    p.add_argument(
        "--split", choices=("heldout", "tune", "all"), default="heldout", help="eval: which questions"
    )
    p.add_argument("--limit", type=int, default=0, help="eval: only the first N questions")
    p.add_argument("--llm", action="store_true", help="eval: also score the SmolLM2 generator (slow on CPU)")
    p.add_argument(
        "--llm-only", action="store_true", help="eval: only the generation rows, on --llm-limit questions"
    )
    p.add_argument(
        "--no-attribution",
        action="store_true",
        help="eval: drop uncited sentences instead of attributing them",
    )
    p.add_argument("--llm-limit", type=int, default=12, help="eval: questions the LLM generators answer")
    p.add_argument(
        "--openai-url",
        default=None,
        help="eval/ask: an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000",
    )
    p.add_argument("--openai-model", default="default")
    p.add_argument(
        "--beir", type=Path, default=None, help="eval: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    p.add_argument("--beir-split", default="test")
    p.add_argument(
        "--beir-out", type=Path, default=None, help="data: also write the KB as a small BEIR folder here"
    )
    p.add_argument("--out", type=Path, default=None, help="eval: also write the tables here (Markdown)")
    p.add_argument("--generator", choices=("extractive", "smollm", "openai"), default="extractive")
    p.add_argument("--rate", type=float, default=20.0, help="bench: requests/s on each of /ask and /search")
    p.add_argument("--duration", type=int, default=60, help="bench: seconds of load")
    p.add_argument("--port", type=int, default=8000, help="serve: port")
    p.add_argument(
        "--prompt-tokens", type=int, default=1000, help="cost: tokens per prompt (5 passages + question)"
    )
    p.add_argument("--answer-tokens", type=int, default=100, help="cost: tokens per answer")
    p.add_argument("--batch", type=int, default=64, help="cost: concurrent sequences decoding together")
    p.add_argument("question", nargs="?", default=None, help="ask: the question")
    args = p.parse_args(argv)
    if args.step == "ask" and not (args.question or "").strip():
        p.error("ask needs a question: mlsd rag ask 'how do I reset my password?'")
    if args.step == "update" and not (args.add or args.delete):
        p.error("update needs --add FILE|DIR or --delete ARTICLE_ID")
    if args.rate <= 0 or not 1 <= args.duration <= 3600:
        p.error("--rate must be positive and --duration between 1 and 3600")
    if args.beir is not None and not args.beir.is_dir():
        p.error(f"--beir {args.beir} is not a folder")
    console = _console()
    try:
        if args.step == "data":
            console.print(_table("mlsd rag data", {"kb": step_data(args.seed)}))
            if args.beir_out:
                from systems.rag_search.data import write_tiny_beir

                console.print(f"wrote a BEIR folder from the KB: {write_tiny_beir(args.beir_out, args.seed)}")
        elif args.step == "index":
            console.print(_table("mlsd rag index", {"index": step_index(args.folder)}))
        elif args.step == "update":
            console.print(_table("mlsd rag update", {"index": step_update(args.add, args.delete)}))
        elif args.step == "train":
            bootstrap_missing_index(args.seed)
            console.print(
                _table("mlsd rag train (reranker, tune split)", {"reranker": step_train(args.seed)})
            )
        elif args.step == "ask":
            return step_ask(args)
        elif args.step == "serve":
            import uvicorn

            bootstrap(args.seed)
            uvicorn.run("systems.rag_search.serve:build_app", factory=True, host="127.0.0.1", port=args.port)
        elif args.step == "eval":
            res, md = step_eval(args)
            for name, rows in res.items():
                if isinstance(rows, dict):
                    if name == "generation":  # many metrics, few generators: one row per metric
                        metrics = list(next(iter(rows.values())))
                        rows = {m: {g: r[m] for g, r in rows.items()} for m in metrics}
                    console.print(_table(f"mlsd rag eval — {name}", rows))
            from systems.rag_search.pipeline import artifacts

            (artifacts()["root"] / "eval.json").write_text(json.dumps(res, indent=2))
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(md)
                console.print(f"wrote {args.out}")
        elif args.step == "bench":
            return step_bench(args)
        elif args.step == "cost":
            from systems.rag_search.cost import GpuShape, LlmShape, serving_math

            res = serving_math(LlmShape(), GpuShape(), args.prompt_tokens, args.answer_tokens, args.batch)
            console.print(
                _table(
                    f"mlsd rag cost — {LlmShape().name} on {GpuShape().name} (arithmetic)",
                    {k: {"value": v} for k, v in res.items()},
                )
            )
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        sys.stderr.write(f"mlsd rag {args.step}: {exc}\n")
        return 1
    return 0


def bootstrap_missing_index(seed: int) -> None:
    from systems.rag_search.pipeline import artifacts

    paths = artifacts()
    if not paths["questions"].exists():
        step_data(seed)
    if not (paths["index"] / "index.pkl").exists():
        step_index(None)


def step_ask(args) -> int:  # noqa: ANN001
    from systems.rag_search.pipeline import RagPipeline

    bootstrap(args.seed)
    pipe = RagPipeline.load()
    if args.generator == "smollm":
        from systems.rag_search.generate import SmolLMGenerator

        pipe.generators["smollm"] = SmolLMGenerator()
    elif args.generator == "openai":
        if not args.openai_url:
            sys.stderr.write("mlsd rag ask: --generator openai needs --openai-url\n")
            return 2
        from systems.rag_search.generate import OpenAIGenerator

        pipe.generators["openai"] = OpenAIGenerator(args.openai_url, args.openai_model)
    res = pipe.ask(args.question, generator=args.generator)
    console = _console()
    console.print(f"[bold]{res['answer']}[/]")
    for s in res["sources"]:
        console.print(f"  [{s['n']}] {s['title']} — {s['section']} (v{s['version']}) {s['url']}")
    if res["dropped"]:
        console.print(f"[yellow]verifier dropped {len(res['dropped'])} sentence(s)[/]")
    console.print(_table("stages (ms)", {"ask": res["stages_ms"]}))
    return 0
