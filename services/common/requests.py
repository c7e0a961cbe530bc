"""Asking the owner: typed NATS request/reply between services.

A service answers the questions it owns as `micro` endpoints (`Endpoint`, declared in its `ServiceSpec`;
replicas share the load through micro's queue group); another service asks with `ask`. A request and its
answer are Structs of the contracts module; a no is a `contracts.Refused`, which the asker raises as the
`ApiError` its own caller sees, so a refusal reads the same whichever service decided it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from .contracts import Refused
from .errors import ApiError

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 5.0
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One question a service answers: its micro endpoint name, subject, request type and handler.

    The handler gets the service's context (services.common.lifecycle: its pool, settings) and the decoded
    request, and returns the answer Struct or raises `ApiError` (sent back as `Refused`)."""

    name: str
    subject: str
    request: type
    handler: Callable[..., Awaitable[msgspec.Struct]]
    # For a subject with a wildcard that names the asker (Subjects.job_secrets: an agent, whose NATS user may
    # publish only its own): reads the asker from the subject, given to the handler as a third argument. A request
    # whose subject names none is refused.
    sender: Callable[[str], str | None] | None = None


def refusal_of(exc: ApiError) -> Refused:
    return Refused(code=exc.code, message=exc.message, field=exc.field, status=exc.status)


async def answer(context: Any, endpoint: Endpoint, data: bytes, subject: str = "") -> bytes:
    """The encoded answer to one request: the handler's, or a `Refused` (a bad request, or the handler's no)."""
    try:
        request = msgspec.json.decode(data, type=endpoint.request)
    except msgspec.ValidationError as exc:
        return _encoder.encode(Refused(code="bad_request", message=f"{endpoint.name}: {exc}", status=400))
    args: tuple[Any, ...] = (context, request)
    if endpoint.sender is not None:
        sender = endpoint.sender(subject)
        if sender is None:
            return _encoder.encode(Refused(code="bad_request", message=f"{endpoint.name}: {subject!r}", status=400))
        args += (sender,)
    try:
        return _encoder.encode(await endpoint.handler(*args))
    except ApiError as exc:
        return _encoder.encode(refusal_of(exc))


async def serve(micro_service: Any, context: Any, endpoint: Endpoint) -> None:
    """Answer `endpoint` on the service's micro instance (discovery and stats come with it)."""

    async def handle(request) -> None:
        try:
            await request.respond(await answer(context, endpoint, request.data, request.subject))
        except Exception:  # an answer never raises into nats-py's loop: the asker times out and says so
            log.exception("%s: no answer to a request", endpoint.name)

    await micro_service.add_endpoint(name=endpoint.name, subject=endpoint.subject, handler=handle)


async def ask(
    nc, subject: str, request: msgspec.Struct, answer_type: type, *, owner: str, timeout: float = ASK_TIMEOUT_S
):
    """Ask the owner of `subject`; returns its typed answer, raises its refusal as `ApiError`, and a 503 naming
    the owner when none answers in time (nothing was decided, so the caller may simply retry)."""
    try:
        reply = await nc.request(subject, _encoder.encode(request), timeout=timeout)
    except (NoRespondersError, NatsTimeout) as exc:
        raise ApiError(503, "service_unavailable", f"the {owner} service did not answer; retry shortly") from exc
    decoded = msgspec.json.decode(reply.data, type=answer_type | Refused)
    if isinstance(decoded, Refused):
        raise ApiError(decoded.status, decoded.code, decoded.message, decoded.field)
    return decoded
