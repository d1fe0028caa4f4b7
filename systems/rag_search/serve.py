"""The search service: POST /ask (answer with inline citations), POST /search (ranked passages), GET / (a page).

uvicorn --factory systems.rag_search.serve:build_app (what `mlsd rag serve` and the bench start). It serves the
artifacts of MLSD_SCALE; MLSD_RAG_* settings choose the generators it loads. Questions are logged with PII redacted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from infra.artifacts import Artifacts
from infra.config import get_settings
from infra.resilience import CircuitBreaker
from infra.serving import create_app, require_ready
from systems.rag_search import SYSTEM
from systems.rag_search.answer import RagPipeline, redact_pii
from systems.rag_search.config import SETTINGS
from systems.rag_search.generate import load_generator

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
    k: int = Field(5, ge=1, le=20, description="passages handed to the generator")
    generator: Literal["extractive", "smollm", "openai"] = "extractive"

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
    load = (
        (lambda: RagResources(pipeline)) if pipeline is not None else (lambda: load_resources(openai_breaker))
    )
    breakers = [openai_breaker] if settings.openai_url else []
    app = create_app(SYSTEM.name, load=load, access_log_enabled=settings.access_log, breakers=breakers)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE.read_text()

    @app.post("/ask")
    def ask(req: AskRequest, res: Resources) -> dict:
        if req.generator not in res.pipeline.generators:
            loaded = sorted(res.pipeline.generators)
            raise HTTPException(
                status_code=400,
                detail=f"generator {req.generator!r} is not loaded on this server; loaded: {loaded}",
            )
        out = res.pipeline.ask(req.question, k=req.k, generator=req.generator)
        log.info(json.dumps({"event": "ask", "question": redact_pii(req.question), "refused": out["refused"],
                             "sources": [s["chunk_id"] for s in out["sources"]]}))  # fmt: skip
        if not settings.debug_raw:  # verified text only: `raw` would make the server an open LLM proxy
            out.pop("raw", None)
        return out

    @app.post("/search")
    def search(req: SearchRequest, res: Resources) -> dict:
        return {"results": res.pipeline.search(req.question, k=req.k, mode=req.mode)}

    return app
