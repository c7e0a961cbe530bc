"""Errors of the OpenAI-compatible surface, in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from litestar import Response


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
