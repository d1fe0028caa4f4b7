"""Logging, configured once for every process mlsd starts: CLI steps, servers, the bench's server.

One format for every logger, the libraries' included: `23:25:21 INFO mlsd.onnx: message`, on stderr, no colour
codes (whether or not stderr is a terminal). MLSD_LOG_LEVEL sets the level of all of them: at INFO, mlsd's lines,
uvicorn's start and stop lines and every library's warnings; the libraries' routine INFO lines (faiss's loader,
MLflow's migrations, onnxruntime's quantizer, each HTTP request httpx makes) only at DEBUG. The JSON access log (`mlsd.access`,
written by infra.serving) prints bare JSON, one object a line, and is the only access line: uvicorn's is off.

Known noise is demoted to DEBUG where it is logged (NOISE) or silenced where it is raised (IGNORED_WARNINGS);
Python warnings go through logging, in the same format. Called by `mlsd` at start and by `create_app` (a server
started by uvicorn directly, as the bench does, gets it too).
"""

from __future__ import annotations

import logging
import re
import sys
import warnings

from infra.config import get_settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATEFMT = "%H:%M:%S"

# Libraries that install handlers (and formats) of their own: theirs are removed, their records reach the root's.
# MLflow would configure its own at import; infra.config sets MLFLOW_CONFIGURE_LOGGING=false before that.
OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "mlflow", "alembic", "feast")
# Loggers whose INFO lines show at INFO; any other library's below WARNING show only at DEBUG.
INFO_SHOWN = ("mlsd", "uvicorn")
# (logger, text in the message) logged at WARNING or INFO and shown only at DEBUG: each says nothing a user of
# mlsd can act on.
NOISE = (
    # onnxruntime.quantization, once per quantize call: the MLP has no shapes left to infer.
    ("root", "Please consider to run pre-processing before quantization"),
    ("root", "Please consider pre-processing before quantization"),
    # MLflow's SQLAlchemy store uses a loader strategy SQLAlchemy 2.1 deprecates: MLflow's to change, not ours.
    # Ignored below; but importing Feast turns every DeprecationWarning back on ("once"), so also demoted here.
    ("py.warnings", "The ``noload`` loader strategy is deprecated"),
)
# (message regex, module regex): Python warnings not shown at all (while no library re-enables them).
IGNORED_WARNINGS = ((r"The ``noload`` loader strategy is deprecated", "mlflow.store"),)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class DemoteNoise(logging.Filter):
    """A handler filter: NOISE records, and the INFO lines of libraries not in INFO_SHOWN, become DEBUG, and pass
    only when the configured level shows DEBUG."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        library_info = record.levelno < logging.WARNING and record.name.split(".")[0] not in INFO_SHOWN
        if record.levelno > logging.DEBUG and (
            library_info or any(record.name == name and text in record.getMessage() for name, text in NOISE)
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.level


class PlainFormatter(logging.Formatter):
    """The one format, with any colour code a library put in its message taken out."""

    def format(self, record: logging.LogRecord) -> str:
        return strip_ansi(super().format(record))


def strip_ansi(text: str) -> str:
    """`text` without terminal colour codes (Feast's and others' when the output is a file or a pipe)."""
    return _ANSI.sub("", text)


def _handler(formatter: logging.Formatter, level: int) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(DemoteNoise(level))
    handler._mlsd = True  # type: ignore[attr-defined]  # ours: a second call finds it and adds none
    return handler


def _ours(logger: logging.Logger) -> bool:
    return any(getattr(h, "_mlsd", False) for h in logger.handlers)


def configure_logging() -> None:
    """Idempotent: the root's handler (the one format), `mlsd`'s (the same format) and `mlsd.access`'s (JSON)."""
    level = getattr(logging, get_settings().log_level)
    formatter = PlainFormatter(FORMAT, datefmt=DATEFMT)
    root = logging.getLogger()
    root.setLevel(level)
    if not _ours(root):
        # basicConfig's handler (onnxruntime calls it at import), not pytest's (a subclass): one format only
        for stream in [h for h in root.handlers if type(h) is logging.StreamHandler]:
            root.removeHandler(stream)
        root.addHandler(_handler(formatter, level))
    mlsd = logging.getLogger("mlsd")  # its own handler, not propagating: tests attach caplog's to it
    mlsd.setLevel(level)
    if not _ours(mlsd):
        mlsd.addHandler(_handler(formatter, level))
        mlsd.propagate = False
    for h in [*root.handlers, *mlsd.handlers]:  # a second call with another MLSD_LOG_LEVEL moves them too
        for f in h.filters:
            if isinstance(f, DemoteNoise):
                f.level = level
    access = logging.getLogger("mlsd.access")
    if not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    for name in OWN_HANDLERS:
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    # the project's JSON line is the access log; uvicorn's would be a second line per request
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    for message, module in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
