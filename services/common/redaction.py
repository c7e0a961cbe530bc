"""No log line carries a secret: tokens, tickets and API keys in query strings, bearer credentials, JWTs, API keys
and passwords in URLs are replaced before any handler sees the record.

`install()` wraps the logging record factory, so it covers every logger of the process (uvicorn's access and
WebSocket lines, httpx's request lines, our own), whatever handlers and formatters are configured after it.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_PATTERNS = (
    # ?token=… &ticket=… and the like, in any URL or request line
    (
        re.compile(
            r"(?i)([?&](?:token|access_token|ticket|api_key|apikey|key|password|secret|invite_code)=)[^&\s\"'#]*"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2" + REDACTED),  # Authorization values
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+"), REDACTED),  # a JWT anywhere
    (re.compile(r"\bllmct_[A-Za-z0-9_-]{8,}"), "llmct_" + REDACTED),  # our API keys
    (re.compile(r"\b([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),  # user:password@ in URLs
)


def redact(text: str) -> str:
    """`text` with every secret it shows replaced by [redacted]."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _clean(value: object) -> object:
    """A log argument without secrets: numbers as they are (for %d), anything else as text only when it had one."""
    if value is None or isinstance(value, (int, float, bool)):
        return value
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - an argument that cannot be shown is left to logging to report
        return value
    clean = redact(text)
    return value if clean == text else clean


def install() -> None:
    """Redact every log record this process makes from now on (idempotent). The record's arguments stay a tuple
    (uvicorn's access formatter unpacks them)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _clean(arg) for name, arg in record.args.items()}
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
