"""The harness's own demo server: a tiny route with two timed stages, to test the harness alone."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, Field

from infra.serving import create_app, stage


class DemoRequest(BaseModel):
    n: int = Field(64, ge=1, le=4096, description="vector length")


def build_app() -> FastAPI:
    app = create_app("demo", access_log_enabled=False)
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((256, 64)).astype(np.float32)

    @app.post("/demo")
    async def demo(req: DemoRequest) -> dict[str, float]:
        with stage("encode"):
            x = np.ones(64, dtype=np.float32) * (req.n / 64.0)
        with stage("score"):
            score = float((matrix @ x).max())
        return {"score": score}

    return app
