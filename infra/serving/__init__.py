"""Shared serving base: app factory, stage timing, ONNX Runtime sessions."""

from infra.serving.app import AppState, create_app, error_body, require_ready
from infra.serving.timing import current_timings, stage

__all__ = ["AppState", "create_app", "error_body", "require_ready", "stage", "current_timings"]
