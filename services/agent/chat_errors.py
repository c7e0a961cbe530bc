"""A model server's error answers in OpenAI's shape, the one the platform documents for /v1.

`llamafactory-cli api` answers a request it cannot use with FastAPI's `{"detail": ...}` (400, 422), and some it
should have refused with a bare `500 Internal Server Error` (text): `max_tokens` below 1, a malformed `tools`
list, an image part sent to a text-only model or one that is not an image. Relayed as they came, they broke the
documented envelope, and a 500 read as the platform's own failure.
"""

from __future__ import annotations

import json
from typing import Any

MAX_MESSAGE = 500


def openai_error(status: int, data: bytes) -> tuple[int, bytes] | None:
    """The answer to relay instead of the model server's (`status`, `data`); None to relay it as it came (a
    success, or an error already in OpenAI's shape). A 5xx becomes 502 `upstream_error`."""
    if status < 400:
        return None
    body = _json(data)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return None
    if status >= 500:
        message = (
            f"the model server failed on this request (HTTP {status}); the deployment's log has the reason. "
            "A parameter it cannot use (max_tokens below 1, malformed tools) or an image, audio or video part "
            "a text-only model cannot take does this"
        )
        return 502, envelope(message, "server_error", "upstream_error")
    message = _detail(body) or f"the model server refused the request (HTTP {status})"
    return status, envelope(message, "invalid_request_error", "invalid_request")


def envelope(message: str, kind: str, code: str) -> bytes:
    """OpenAI's error body."""
    error = {"message": message[:MAX_MESSAGE], "type": kind, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _detail(body: Any) -> str | None:
    """FastAPI's `detail`: a sentence, or a list of {loc, msg} (its request validation)."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        problems = []
        for item in detail[:3]:
            if isinstance(item, dict):
                where = ".".join(str(part) for part in item.get("loc", []) if part != "body")
                problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return "; ".join(problems) or None
    return None
