"""Credentials out of anything a client or a log reader sees: `redact(text)`.

Exception messages carry connection strings ("Error connecting to redis://:s3cret@cache:6379"), and those reach
/readyz, 503 and 500 bodies and log lines. `redact` masks the secret and keeps what helps debugging (scheme, user,
host, port, database):

    redis://:pw@host:6379/0                    -> redis://:***@host:6379/0
    postgresql://app:pw@db:5432/mlflow         -> postgresql://app:***@db:5432/mlflow
    https://user:pw@llm.internal/v1            -> https://user:***@llm.internal/v1
    cache:6379,password=pw,ssl=true            -> cache:6379,password=***,ssl=true   (Feast's Redis string)
    host=db password=pw dbname=x               -> host=db password=*** dbname=x     (libpq)
    {'password': 'pw'}                         -> {'password': '***'}
    Authorization: Bearer eyJ...               -> Authorization: Bearer ***
    sk-proj-AbC...                             -> sk-***                            (OpenAI-style API keys)

A user name alone (`postgresql://postgres@db`) is kept: it is not a secret and says who connected.
"""

from __future__ import annotations

import logging
import re
import traceback

MASK = "***"

# scheme://user:password@  (the user may be empty; a password may hold an unescaped "@": up to the last one)
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)(?P<secret>[^\s/@]*(?:@[^\s/@]*)*)(?=@)"
)
# a key that names a secret: password, client_secret, access_token, x-api-key, ...
_SECRET_KEY = r"[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)"
# key=value in connection strings, query strings and DSNs: password=pw, ?token=pw&..., api_key=pw
_KEY_VALUE = re.compile(rf"(?P<head>\b{_SECRET_KEY}\s*=\s*)(?P<secret>[^\s,;&'\"]+)", re.IGNORECASE)
# 'password': 'pw' or "password": "pw" (a dict's repr, JSON)
_QUOTED = re.compile(
    rf"(?P<head>(?P<q>['\"]){_SECRET_KEY}(?P=q)\s*:\s*(?P<q2>['\"]))(?P<secret>[^'\"]*)", re.IGNORECASE
)
# Authorization: <scheme> <credentials>, and a bare "Bearer <token>" (8+ characters, so prose is left alone)
_AUTH_HEADER = re.compile(
    r"(?P<head>\bAuthorization\s*:\s*\w+\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE
)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
_API_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")
_PATTERNS = (_URL_PASSWORD, _QUOTED, _KEY_VALUE, _AUTH_HEADER, _BEARER)


def _mask(match: re.Match[str]) -> str:
    return match.group("head") + MASK


def redact(text: str) -> str:
    """`text` with passwords, tokens and API keys replaced by ***; idempotent, a no-op on plain text."""
    if not text:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return _API_KEY.sub("sk-" + MASK, text)


class RedactingFilter(logging.Filter):
    """A logger filter that redacts each record's message and traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True


def redact_logger(name: str) -> None:
    """Attach one RedactingFilter to the logger `name` (idempotent)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
