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
    SerializationException,
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
    return Response(error_body(code, message, field), status_code=status, media_type=MediaType.JSON, headers=headers)


def handle_api_error(_: Request, exc: ApiError) -> Response:
    return _respond(exc.status, exc.code, exc.message, exc.field, exc.headers)


# msgspec names a missing or unexpected key only in its message, not in the error's path.
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]*)`")
# Litestar's name for the request body in its validation errors; callers know no such field.
_BODY_KEY = "data"


def _field_of(detail: dict) -> str | None:
    """The caller's name for the bad value: a dotted path in the body, or the parameter's name."""
    key = str(detail.get("key") or "")
    field = key if key and key != _BODY_KEY else None
    named = _NAMED_FIELD.search(str(detail.get("message") or ""))
    if named:
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    return field


def handle_validation(_: Request, exc: ValidationException) -> Response:
    """Litestar's body/parameter validation: a missing body is 400, a bad field 422 naming it."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    detail = extra[0] if extra and isinstance(extra[0], dict) else {}
    message = str(detail.get("message") or exc.detail)
    if detail.get("key") == _BODY_KEY and message == repr(_BODY_KEY):
        # Litestar drops an empty or `null` body, then reports the handler's missing `data` argument.
        return _respond(400, "malformed_json", "the request body is missing: send a JSON object")
    return _respond(422, "invalid_field", message, _field_of(detail))


def handle_http(request: Request, exc: HTTPException) -> Response:
    headers = dict(exc.headers or {})  # keep what Litestar adds, e.g. Allow on a 405
    if isinstance(exc, NotAuthorizedException):
        return _respond(401, "unauthorized", exc.detail, headers={**headers, "WWW-Authenticate": "Bearer"})
    if isinstance(exc, PermissionDeniedException):
        return _respond(403, "forbidden", exc.detail, headers=headers)
    if isinstance(exc.__cause__, SerializationException):
        # Litestar turns a body it cannot decode into a bare 400; say what it was.
        return _respond(400, "malformed_json", f"the request body is not valid JSON: {exc.detail}")
    status = exc.status_code
    if status >= 500:
        log.error("%s on %s %s: %s", status, request.method, request.url.path, exc.detail, exc_info=exc)
        return _respond(status, "internal_error", "internal error; it has been logged", headers=headers)
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(status, "bad_request")
    return _respond(status, code, exc.detail, headers=headers)


def handle_nul_text(_: Request, exc: Exception) -> Response:
    # Postgres text cannot hold U+0000; only caller input puts it there, so it is their error, not a 500.
    return _respond(422, "invalid_field", "text must not contain NUL (\\u0000) characters")


def handle_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return _respond(
        503,
        "store_unavailable",
        "the database is unavailable; nothing was changed, retry shortly",
        headers={"Retry-After": "2"},
    )


def handle_internal(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal error; it has been logged")


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    asyncpg.exceptions.CharacterNotInRepertoireError: handle_nul_text,
    asyncpg.exceptions.ConnectionDoesNotExistError: handle_unavailable,
    asyncpg.exceptions.CannotConnectNowError: handle_unavailable,
    asyncpg.exceptions.InterfaceError: handle_unavailable,
    ConnectionError: handle_unavailable,
    TimeoutError: handle_unavailable,
    Exception: handle_internal,
}
