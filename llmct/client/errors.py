"""Exit codes scripts can trust, and the errors that carry them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum

import httpx


class Exit(IntEnum):
    """What `llmct`'s user commands exit with (docs/cli.md)."""

    OK = 0
    REFUSED = 1  # the gateway answered with an error: its message and field are printed
    USAGE = 2  # the command line was wrong (click's own code for a usage error)
    UNREACHABLE = 3  # no answer (gateway down, timeout, 502/503/504), or no credential / a credential refused
    ENDED_BADLY = 4  # a job or deployment waited for ended failed, cancelled or stopped
    INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


class CliError(Exception):
    """An error to print (one line, on stderr) and exit with."""

    def __init__(self, message: str, code: Exit):
        super().__init__(message)
        self.message, self.code = message, code


def not_logged_in() -> CliError:
    return CliError("not logged in: run `llmct login --url URL` (or set LLMCT_URL and LLMCT_API_KEY)", Exit.UNREACHABLE)


def unreachable(url: str, exc: Exception) -> CliError:
    return CliError(f"cannot reach the gateway at {url}: {exc.__class__.__name__}: {exc}", Exit.UNREACHABLE)


@dataclass(frozen=True)
class ApiRefusal:
    """An error answer, read from the platform's envelope {"error": {code, message, field}} or OpenAI's
    {"error": {message, type, param, code}} (the /v1 routes)."""

    status: int
    code: str | None
    message: str
    field: str | None

    def text(self) -> str:
        where = f" (field: {self.field})" if self.field else ""
        code = f" {self.code}" if self.code else ""
        return f"HTTP {self.status}{code}: {self.message}{where}"


def refusal_of(status: int, body: bytes) -> ApiRefusal:
    """What an error answer says, whatever its body holds."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        text = body.decode("utf-8", "replace").strip()[:300]
        return ApiRefusal(status, None, text or httpx.codes.get_reason_phrase(status), None)
    field = error.get("field", error.get("param"))
    code = error.get("code")
    return ApiRefusal(
        status,
        str(code) if code is not None else None,
        str(error.get("message") or httpx.codes.get_reason_phrase(status)),
        str(field) if field is not None else None,
    )


def exit_code_of(status: int) -> Exit:
    """The exit code of an error answer: no answer worth retrying as is and a refused credential are 3, every other
    error the gateway gives is 1."""
    if status == 401 or status in (502, 503, 504):
        return Exit.UNREACHABLE
    return Exit.REFUSED


def api_error(status: int, body: bytes) -> CliError:
    refusal = refusal_of(status, body)
    message = refusal.text()
    if status == 401:
        message += " — run `llmct login` again"
    return CliError(message, exit_code_of(status))
