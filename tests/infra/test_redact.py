"""redact(): every connection-string form a system's error text can carry loses its secret, and nothing else."""

import logging

import pytest

from infra.redact import MASK, RedactingFilter, redact, redact_logger

SECRET = "s3cr3t-P4ss"

CASES = [
    # (text with the secret, what it must become)
    (f"redis://:{SECRET}@cache:6379/0", "redis://:***@cache:6379/0"),
    (f"rediss://default:{SECRET}@cache.example.com:6380/1", "rediss://default:***@cache.example.com:6380/1"),
    (f"postgresql://mlflow:{SECRET}@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
    (f"postgresql+psycopg2://mlflow:{SECRET}@db/mlflow", "postgresql+psycopg2://mlflow:***@db/mlflow"),
    (f"http://user:{SECRET}@llm.local:8000/v1", "http://user:***@llm.local:8000/v1"),
    (f"https://user:{SECRET}@api.example.com/v1/chat", "https://user:***@api.example.com/v1/chat"),
    ("redis://:p@ss:w0rd@cache:6379", "redis://:***@cache:6379"),  # an unescaped "@" in the password
    (f"cache:6379,password={SECRET},ssl=true", "cache:6379,password=***,ssl=true"),  # Feast's Redis string
    (f"host=db port=5432 password={SECRET} dbname=x", "host=db port=5432 password=*** dbname=x"),  # libpq
    (f"http://llm/v1?api_key={SECRET}&model=m", "http://llm/v1?api_key=***&model=m"),
    (f"client_secret={SECRET}; access_token={SECRET}", "client_secret=***; access_token=***"),
    (f"{{'type': 'redis', 'password': '{SECRET}'}}", "{'type': 'redis', 'password': '***'}"),
    (f'{{"api_key": "{SECRET}", "model": "m"}}', '{"api_key": "***", "model": "m"}'),
    (f"Authorization: Bearer {SECRET}", "Authorization: Bearer ***"),
    ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
    ("sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "sent Bearer ***"),
    ("OPENAI key sk-proj-AbCdEfGhIjKlMnOpQrSt rejected", "OPENAI key sk-*** rejected"),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[1][:40] for c in CASES])
def test_each_form_loses_its_secret(text: str, expected: str) -> None:
    out = redact(text)
    assert out == expected
    assert SECRET not in out and "p@ss" not in out
    assert redact(out) == out  # idempotent: redacting twice (a log of a 503 body) changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "Error 111 connecting to 127.0.0.1:6379. Connection refused.",
        "postgresql://postgres@127.0.0.1:5432/postgres is not reachable",  # a user name alone is kept
        "https://example.com:443/path?page=2&max_tokens=256",
        "Bearer token missing; send `Authorization: Bearer <token>`",
        "redis://cache:6379/0",
        "",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_an_exception_message_is_redacted_inside_a_sentence() -> None:
    msg = f"ConnectionError: Error connecting to redis://:{SECRET}@cache:6379/0 (timeout after 50 ms)"
    assert (
        redact(msg) == "ConnectionError: Error connecting to redis://:***@cache:6379/0 (timeout after 50 ms)"
    )


def test_the_log_filter_redacts_message_args_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("mlsd.test_redact")
    redact_logger("mlsd.test_redact")
    redact_logger("mlsd.test_redact")
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1  # idempotent
    logger.addHandler(caplog.handler)
    try:
        logger.error("cannot reach %s", f"postgresql://u:{SECRET}@db/x")
        try:
            raise ConnectionError(f"redis://:{SECRET}@cache:6379")
        except ConnectionError:
            logger.exception("store down")
    finally:
        logger.removeHandler(caplog.handler)
    text = caplog.text
    assert SECRET not in text
    assert f"postgresql://u:{MASK}@db/x" in text and f"redis://:{MASK}@cache:6379" in text
