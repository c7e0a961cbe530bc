"""Errors of a service's OpenAI-compatible routes (/v1) in OpenAI's shape: {"error": {"message", "type", "param",
"code"}}, so the official SDK raises the exception people expect (BadRequestError, NotFoundError, ...).

Give a controller or router serving /v1 `exception_handlers=OPENAI_EXCEPTION_HANDLERS`: each platform handler
(errors.py) still decides the status and the message, and its envelope is told again in OpenAI's words. A bad
field is a 400 there (OpenAI's status for invalid input), not the platform's 422."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from litestar import MediaType, Request, Response

from .errors import EXCEPTION_HANDLERS

# OpenAI answers a malformed or invalid request with 400 whatever is wrong with it.
STATUS = {422: 400}
TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error", 429: "rate_limit_error"}


def openai_body(status: int, code: str | None, message: str, param: str | None = None) -> dict:
    """OpenAI's error body; `type` follows the status as OpenAI's does."""
    kind = "server_error" if status >= 500 else TYPES.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_shaped(handler: Callable[[Request, Exception], Response]) -> Callable[[Request, Exception], Response]:
    """A platform exception handler whose answer is told in OpenAI's shape (same message, code and field)."""

    def handle(request: Request, exc: Exception) -> Response:
        answer = handler(request, exc)
        content = answer.content if isinstance(answer.content, dict) else msgspec.json.decode(answer.content or b"{}")
        error = content.get("error") or {}
        status = answer.status_code or 500
        status = STATUS.get(status, status)
        return Response(
            openai_body(status, error.get("code"), str(error.get("message") or ""), error.get("field")),
            status_code=status,
            media_type=MediaType.JSON,
            headers=dict(answer.headers or {}),
        )

    return handle


OPENAI_EXCEPTION_HANDLERS = {kind: openai_shaped(handler) for kind, handler in EXCEPTION_HANDLERS.items()}
"""The platform's exception handlers, answering in OpenAI's shape: for the layers (controllers) serving /v1."""
