"""One error shape for the whole API: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import logging
import re

import asyncpg
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a caller caused, or one they should hear about, with a stable code."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    """The same answer for 'missing' and 'not yours'."""
    return ApiError(404, "not_found", f"{what} not found")


def error_body(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


def _respond(status: int, code: str, message: str, field: str | None = None, headers=None) -> Response:
    return Response(
        error_body(code, message, field), status_code=status, media_type=MediaType.JSON, headers=headers
    )


def handle_api_error(_: Request, exc: ApiError) -> Response:
    return _respond(exc.status, exc.code, exc.message, exc.field, exc.headers)


_AT_PATH = re.compile(r"at `\$\.?([^`]*)`")


def _field_from(message: str) -> str | None:
    match = _AT_PATH.search(message)
    return match.group(1) or None if match else None


def handle_validation(_: Request, exc: ValidationException) -> Response:
    """Litestar's body/parameter validation: malformed JSON is 400, a bad field 422."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    detail = extra[0] if extra and isinstance(extra[0], dict) else {}
    message = str(detail.get("message") or exc.detail)
    if "malformed" in message.lower() or "JSON is malformed" in message or "invalid json" in message.lower():
        return _respond(400, "malformed_json", "the request body is not valid JSON")
    field = detail.get("key") or _field_from(message)
    if detail.get("source") in ("query", "path", "header", "cookie") and detail.get("key"):
        field = detail["key"]
    if field == "body":
        field = _field_from(message)
    return _respond(422, "invalid_field", message, field)


def handle_http(_: Request, exc: HTTPException) -> Response:
    if isinstance(exc, NotAuthorizedException):
        return _respond(401, "unauthorized", exc.detail, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, PermissionDeniedException):
        return _respond(403, "forbidden", exc.detail)
    status = exc.status_code
    if status >= 500:
        return _respond(status, "internal_error", "internal error; it has been logged")
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(status, "bad_request")
    return _respond(status, code, exc.detail)


def handle_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return _respond(503, "store_unavailable", "the database is unavailable; nothing was changed, retry shortly",
                    headers={"Retry-After": "2"})


def handle_internal(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal error; it has been logged")


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    asyncpg.exceptions.ConnectionDoesNotExistError: handle_unavailable,
    asyncpg.exceptions.CannotConnectNowError: handle_unavailable,
    asyncpg.exceptions.InterfaceError: handle_unavailable,
    ConnectionError: handle_unavailable,
    OSError: handle_unavailable,
    TimeoutError: handle_unavailable,
    Exception: handle_internal,
}
