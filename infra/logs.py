"""Logging, configured once: `mlsd.*` loggers print INFO and up to stderr; the access log prints bare JSON.

Called by `mlsd` at start and by `create_app` (a server started by uvicorn directly gets it too);
MLSD_LOG_LEVEL sets the level.
"""

from __future__ import annotations

import logging
import sys

from infra.config import get_settings

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging() -> None:
    """Idempotent: a handler on `mlsd` (human lines) and one on `mlsd.access` (one JSON object a line)."""
    level = getattr(logging, get_settings().log_level)
    root = logging.getLogger("mlsd")
    root.setLevel(level)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
        root.propagate = False
    access = logging.getLogger("mlsd.access")
    if not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
