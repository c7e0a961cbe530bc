"""Errors of the OpenAI-compatible surface, in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import functools
from typing import Any

from litestar import Request, Response
from litestar.exceptions import NotAuthorizedException

from services.common.errors import ApiError
from services.common.security import Principal, authenticate


class OpenAIError(Exception):
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind
        self.headers = headers or {}

    def response(self) -> Response:
        return Response(
            {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}},
            status_code=self.status,
            headers=self.headers,
        )


def unknown_model(name: str) -> OpenAIError:
    """The one answer for a model that does not exist, is not deployed by the caller, or is someone else's adapter."""
    return OpenAIError(
        404,
        f"The model '{name}' does not exist or is not deployed by you: GET /v1/models lists yours",
        "model_not_found",
        "model",
    )


async def openai_caller(request: Request) -> Principal:
    """Who calls a /v1 route (these authenticate themselves, to answer a 401 in OpenAI's shape)."""
    try:
        request.state.principal = await authenticate(request)
        return request.state.principal
    except NotAuthorizedException as exc:
        raise OpenAIError(401, exc.detail, "invalid_api_key", headers={"WWW-Authenticate": "Bearer"}) from None
    except ApiError as exc:  # an API key whose scope does not cover the route
        raise OpenAIError(exc.status, exc.message, exc.code, kind="permission_error") from None


def openai_errors(handler):
    """Answer OpenAIError in OpenAI's shape. The handler's signature is kept (wraps), so Litestar injects what it
    names."""

    @functools.wraps(handler)
    async def wrapped(**kwargs: Any) -> Response:
        try:
            return await handler(**kwargs)
        except OpenAIError as exc:
            return exc.response()

    return wrapped
