"""Log redaction (services/common/redaction.py): what a log line may never show."""

from __future__ import annotations

import logging

import pytest

from services.common import redaction

pytestmark = pytest.mark.unit

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3JfMSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
KEY = "llmct_" + "A1b2" * 10


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f'127.0.0.1:5000 - "WebSocket /api/jobs/feed?token={JWT}" 403', JWT),
        ('"GET /api/ws/echo?after=3&ticket=Zm9vYmFyYmF6cXV4 HTTP/1.1" 200', "Zm9vYmFyYmF6cXV4"),
        (f"GET /api/models?api_key={KEY}&page=2", KEY),
        (f"headers: {{'authorization': 'Bearer {KEY}'}}", KEY),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("connect nats://llmct-services:s3cretpassw0rd@127.0.0.1:4222 failed", "s3cretpassw0rd"),
        ("postgresql://postgres:pg-pass-123@127.0.0.1:5433/llmct", "pg-pass-123"),
        (f"token is {JWT}", JWT),
    ],
)
def test_secrets_are_redacted(line, secret):
    clean = redaction.redact(line)
    assert secret not in clean and redaction.REDACTED in clean


def test_the_rest_of_a_line_is_kept():
    line = '127.0.0.1:5000 - "GET /api/jobs/job_1/logs?after=7 HTTP/1.1" 200'
    assert redaction.redact(line) == line


def test_installed_it_cleans_arguments_and_keeps_numbers(caplog):
    redaction.install()
    redaction.install()  # idempotent
    log = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        log.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/api/x?token={JWT}", "1.1", 200)
    record = caplog.records[-1]
    assert isinstance(record.args, tuple) and record.args[-1] == 200  # uvicorn's formatter unpacks them
    assert JWT not in record.getMessage() and "?token=[redacted]" in record.getMessage()
