"""Shared serving base: app factory, stage timing, ONNX Runtime sessions."""

from infra.serving.app import (
    ApiError,
    AppState,
    create_app,
    error_body,
    require_admin,
    require_ready,
    run_server,
)
from infra.serving.timing import current_timings, stage

__all__ = [
    "ApiError",
    "AppState",
    "create_app",
    "error_body",
    "require_admin",
    "require_ready",
    "run_server",
    "stage",
    "current_timings",
]
