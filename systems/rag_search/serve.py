"""The search service: POST /ask (answer with inline citations), POST /search (ranked passages), GET / (a page).

uvicorn --factory systems.rag_search.serve:build_app. Questions are logged with PII redacted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Literal

from fastapi import Depends
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, field_validator

from infra.serving import Resources, create_app, require_ready
from systems.rag_search.pipeline import RagPipeline, redact_pii

log = logging.getLogger("mlsd.rag")
MAX_QUESTION_CHARS = 1000
PAGE = Path(__file__).with_name("page.html")


class AskRequest(BaseModel):
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
    k: int = Field(10, ge=1, le=50, description="passages to return")
    mode: Literal["bm25", "dense", "hybrid", "rerank"] = "rerank"


def _load(resources: Resources) -> None:
    threads = int(os.environ.get("MLSD_RAG_THREADS", "1"))
    pipe = RagPipeline.load(threads=threads)
    if os.environ.get("MLSD_RAG_SMOLLM") == "1":
        from systems.rag_search.generate import SmolLMGenerator

        pipe.generators["smollm"] = SmolLMGenerator()
    if os.environ.get("MLSD_RAG_OPENAI_URL"):
        from systems.rag_search.generate import OpenAIGenerator

        pipe.generators["openai"] = OpenAIGenerator(
            os.environ["MLSD_RAG_OPENAI_URL"], os.environ.get("MLSD_RAG_OPENAI_MODEL", "default")
        )
    pipe.ask("warm up the encoder")
    resources["pipeline"] = pipe


def build_app(pipeline: RagPipeline | None = None):  # noqa: ANN201
    """The app; pass a pipeline to serve one built in-process (tests), else it loads from .mlsd/rag/."""
    load = (lambda r: r.items.__setitem__("pipeline", pipeline)) if pipeline is not None else _load
    app = create_app("rag", load=load, access_log_enabled=os.environ.get("MLSD_RAG_ACCESS_LOG", "1") == "1")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE.read_text()

    @app.post("/ask")
    def ask(req: AskRequest, res: Resources = Depends(require_ready)) -> dict:
        pipe: RagPipeline = res["pipeline"]
        if req.generator not in pipe.generators:
            from fastapi import HTTPException

            raise HTTPException(
                status_code=400,
                detail=f"generator {req.generator!r} is not loaded on this server; loaded: {sorted(pipe.generators)}",
            )
        out = pipe.ask(req.question, k=req.k, generator=req.generator)
        log.info(json.dumps({"event": "ask", "question": redact_pii(req.question), "refused": out["refused"],
                             "sources": [s["chunk_id"] for s in out["sources"]]}))  # fmt: skip
        return out

    @app.post("/search")
    def search(req: SearchRequest, res: Resources = Depends(require_ready)) -> dict:
        pipe: RagPipeline = res["pipeline"]
        return {"results": pipe.search(req.question, k=req.k, mode=req.mode)}

    return app
