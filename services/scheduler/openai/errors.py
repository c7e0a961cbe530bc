"""Errors of the scheduler's /v1 routes in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with
OpenAI's status codes, so that the `openai` package raises the exception people expect (BadRequestError,
NotFoundError, ...). Each of the platform's handlers (services/common/errors.py) decides what happened; this only
reshapes its answer: a 422 becomes OpenAI's 400, the field becomes `param`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import MediaType, Request, Response

from services.common.errors import EXCEPTION_HANDLERS

KINDS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_kind(status: int) -> str:
    """OpenAI's error `type` for a status."""
    return "server_error" if status >= 500 else KINDS.get(status, "invalid_request_error")


def openai_body(status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Our envelope's status and body, as OpenAI's."""
    status = 400 if status == 422 else status
    error = body.get("error") or {}
    shaped = {"message": error.get("message"), "type": openai_kind(status), "param": error.get("field")}
    return status, {"error": {**shaped, "code": error.get("code")}}


def reshaped(handler: Callable[[Request, Any], Response]) -> Callable[[Request, Any], Response]:
    def handle(request: Request, exc: Any) -> Response:
        answer = handler(request, exc)
        status, body = openai_body(answer.status_code or 500, answer.content)
        return Response(body, status_code=status, media_type=MediaType.JSON, headers=answer.headers)

    return handle


OPENAI_EXCEPTION_HANDLERS = {kind: reshaped(handler) for kind, handler in EXCEPTION_HANDLERS.items()}
