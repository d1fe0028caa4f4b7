"""The search service: POST /ask (answer with inline citations), POST /search (ranked passages), GET / (the
console: the question box with the answer, its citations, the passages and the sentences the verifier dropped; knobs
for the retriever, k, the generator and the refusal threshold; two fault switches, an LLM that is down and a
generator that hallucinates, each answered the way DESIGN.md §11 promises).

uvicorn --factory systems.rag_search.serve:build_app (what `mlsd rag serve` and the bench start). It serves the
artifacts of MLSD_SCALE; MLSD_RAG_* settings choose the generators it loads. Questions are logged with PII redacted.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from infra.artifacts import Artifacts
from infra.config import get_settings
from infra.resilience import CircuitBreaker
from infra.serving import create_app, require_ready
from infra.serving.console import Console, Settings, TrafficRequest, add_console
from systems.rag_search import SYSTEM
from systems.rag_search.answer import RagPipeline, redact_pii
from systems.rag_search.config import SETTINGS
from systems.rag_search.generate import Passage, load_generator, looks_like_injection
from systems.rag_search.retrieve import MODES

log = logging.getLogger("mlsd.rag")
MAX_QUESTION_CHARS = 1000
PAGE = Path(__file__).with_name("page.html")


class AskRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"question": "How do I reset my password?", "k": 5, "generator": "extractive"}]
        }
    )

    question: str = Field(
        ..., min_length=1, max_length=MAX_QUESTION_CHARS, description="the customer's question"
    )
    k: int | None = Field(
        None, ge=1, le=20, description="passages handed to the generator (default: the server's, 5)"
    )
    generator: Literal["extractive", "smollm", "openai"] | None = Field(
        None, description="default: the server's setting (extractive unless the console changed it)"
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question is blank")
        return v.strip()


class SearchRequest(AskRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"question": "How do I reset my password?", "k": 10, "mode": "rerank"}]
        }
    )

    k: int = Field(10, ge=1, le=50, description="passages to return")
    mode: Literal["bm25", "dense", "hybrid", "maxsim", "rerank"] = "rerank"  # retrieve.MODES


@dataclass
class RagResources:
    """What the handlers use: the request path with its index, models and the generators this server loaded."""

    pipeline: RagPipeline


Resources = Annotated[RagResources, Depends(require_ready)]  # a handler's resources, 503 until loaded
TRAFFIC_QUESTIONS = (  # the console's generated questions: answerable ones, a multi-part one, off-topic ones
    "what does error E105 mean", "how do I reset my password on iOS", "can I get a refund",
    "how long is the free trial", "how do I connect Slack", "how do I export my notes to PDF",
    "how do I turn on two-factor authentication", "how long do deleted notes stay in the trash",
    "I am locked out of my account", "how do I connect Jira and also export to Markdown",
    "what is the capital of France", "recommend a good pizza place",
)  # fmt: skip


class RagKnobs(Settings):
    mode: Literal[MODES] = Field("rerank", description="the retriever /ask uses")  # type: ignore[valid-type]
    k: int = Field(5, ge=1, le=20, description="passages handed to the generator")
    generator: Literal["extractive", "smollm", "openai"] = Field("extractive", description="loaded ones only")
    refuse_below: float = Field(
        0.2, ge=0.0, le=1.0, description="refuse under this top passage score (the reranker's probability)"
    )


class RagFaults(Settings):
    llm_down: bool = Field(
        False, description="the generator is an LLM endpoint that refuses: extractive fallback"
    )
    generator_hallucinates: bool = Field(
        False, description="the generator changes numbers and invents a sentence: the verifier drops them"
    )


class DownLLM:
    """An LLM endpoint that refuses every call, behind its breaker: RagPipeline.generate answers extractively."""

    name = "llm_down"

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker, self.deadline_s = breaker, 2.0

    def generate(self, question: str, qvec: np.ndarray, passages: list[Passage]) -> str:
        raise ConnectionError("LLM endpoint refused the connection (the console's fault switch)")


class HallucinatingGenerator:
    """Another generator's text with every number changed and an invented, cited sentence added: what the
    verifier exists for (DESIGN.md §6)."""

    name = "hallucinating"

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def generate(self, question: str, qvec: np.ndarray, passages: list[Passage]) -> str:
        text = self.inner.generate(question, qvec, passages)  # type: ignore[attr-defined]
        text = re.sub(r"(?<![\[\d])\d+(?![\]\d])", lambda m: str(int(m.group()) + 7), text)
        return text + " Every plan includes a full refund for 90 days and free phone support [1]."


def dropped_why(dropped: list[str]) -> list[dict[str, str]]:
    """Each sentence the verifier dropped, with the verifier's reason (generate.verify's two branches)."""
    return [{"text": s, "why": "reads like an instruction (prompt injection)" if looks_like_injection(s)
             else "not supported by the passage it cites (numbers or content words missing)"} for s in dropped]  # fmt: skip


def load_resources(openai_breaker: CircuitBreaker | None = None) -> RagResources:
    """The pipeline from <MLSD_DATA_DIR>/rag/<MLSD_RAG_VARIANT or MLSD_SCALE>/, the generators the settings ask
    for, a warm encoder. A corrupt or missing index raises here: the app answers 503 with the reason at /readyz,
    never crash-loops."""
    settings = SETTINGS()
    folder = settings.variant or get_settings().scale
    pipe = RagPipeline.load(Artifacts(SYSTEM.name, folder), threads=settings.threads)
    if settings.smollm:
        pipe.generators["smollm"] = load_generator("smollm")
    if settings.openai_url:
        pipe.generators["openai"] = load_generator(
            "openai", settings.openai_url, settings.openai_model, settings.openai_deadline_s, openai_breaker
        )
    pipe.ask("warm up the encoder")
    return RagResources(pipe)


def build_app(pipeline: RagPipeline | None = None) -> FastAPI:
    """The app; pass a pipeline to serve one built in-process (tests), else it loads from the artifact folder."""
    settings = SETTINGS()
    openai_breaker = CircuitBreaker("openai", failure_threshold=3, cooldown_s=30.0, max_workers=4)

    def load() -> RagResources:
        res = RagResources(pipeline) if pipeline is not None else load_resources(openai_breaker)
        cfg = res.pipeline.config  # the console's defaults are what `mlsd rag train` chose
        console.set_defaults(RagKnobs(k=cfg.k, refuse_below=min(1.0, max(0.0, cfg.refuse_below))))
        return res

    breakers = [openai_breaker] if settings.openai_url else []
    app = create_app(SYSTEM.name, load=load, access_log_enabled=settings.access_log, breakers=breakers)

    llm_breaker = CircuitBreaker("llm_fault", failure_threshold=3, cooldown_s=10.0, max_workers=2)
    live = {"generator": "extractive", "faults": RagFaults()}

    def apply(knobs: RagKnobs, faults: RagFaults) -> None:
        pipe = app.state.resources.get().pipeline
        if knobs.generator not in pipe.generators:
            raise ValueError(
                f"generator {knobs.generator!r} is not loaded; loaded: {sorted(pipe.generators)}"
            )
        pipe.mode, pipe.config.k, pipe.config.refuse_below = knobs.mode, knobs.k, knobs.refuse_below
        live["generator"], live["faults"] = knobs.generator, faults

    def traffic(rng: np.random.Generator) -> TrafficRequest:
        return TrafficRequest("/ask", {"question": str(rng.choice(TRAFFIC_QUESTIONS))})

    console = Console(
        system="rag_search", title="rag: help-center answers with citations", knobs=RagKnobs(),
        faults=RagFaults(), traffic=traffic, request=TrafficRequest("/ask", {"question": TRAFFIC_QUESTIONS[0]}),
        apply=apply, panel=PAGE, gauges=("refused", "dropped_sentences", "generator_degraded"),
    )  # fmt: skip
    add_console(app, console)

    @app.post("/ask")
    def ask(req: AskRequest, res: Resources) -> dict:
        generator = req.generator or live["generator"]
        if generator not in res.pipeline.generators:
            loaded = sorted(res.pipeline.generators)
            raise HTTPException(
                status_code=400,
                detail=f"generator {generator!r} is not loaded on this server; loaded: {loaded}",
            )
        faults: RagFaults = live["faults"]  # type: ignore[assignment]
        if faults.llm_down or faults.generator_hallucinates:
            gens = res.pipeline.generators
            gen = DownLLM(llm_breaker) if faults.llm_down else gens[generator]
            generator = "llm_down" if faults.llm_down else generator
            if faults.generator_hallucinates:
                gen, generator = HallucinatingGenerator(gen), generator + "+hallucinating"
            gens[generator] = gen  # one per fault combination, reused
        out = res.pipeline.ask(req.question, k=req.k, generator=generator)
        out["dropped_why"] = dropped_why(out["dropped"])
        console.series.gauge("refused", float(out["refused"]))
        console.series.gauge("dropped_sentences", float(len(out["dropped"])))
        console.series.gauge(
            "generator_degraded", float(any(f.startswith("generator_degraded") for f in out["flags"]))
        )
        log.info(json.dumps({"event": "ask", "question": redact_pii(req.question), "refused": out["refused"],
                             "sources": [s["chunk_id"] for s in out["sources"]]}))  # fmt: skip
        if not settings.debug_raw:  # verified text only: `raw` would make the server an open LLM proxy
            out.pop("raw", None)
        return out

    @app.post("/search")
    def search(req: SearchRequest, res: Resources) -> dict:
        return {"results": res.pipeline.search(req.question, k=req.k, mode=req.mode)}

    return app
