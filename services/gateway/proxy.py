"""Forward each public /api prefix to the service that owns it, bodies streamed both ways.

Range and If-Range go up like any other header, and 206/416 with Content-Range, Accept-Ranges, ETag and
Content-Length come back unchanged, so a download through the gateway resumes as it would from its owner."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote, unquote

import httpx
from litestar import HttpMethod, Request, Response, route
from litestar.background_tasks import BackgroundTask
from litestar.response import Stream

from services.common.dependencies import Injected
from services.common.errors import ApiError
from services.common.openai_errors import OPENAI_EXCEPTION_HANDLERS

from .limits import BodyCut, limits_of, paced
from .replicas import REPLICAS
from .settings import GatewaySettings

log = logging.getLogger(__name__)

# Public route prefix -> owning service (DESIGN.md, "Who owns what").
ROUTES = {
    "auth": "auth",
    "jobs": "scheduler",
    "evals": "scheduler",
    "agents": "scheduler",
    "deployments": "scheduler",
    "quotas": "scheduler",
    "webhooks": "scheduler",
    "secrets": "scheduler",
    "datasets": "datasets",
    "models": "registry",
}
# OpenAI's resources other services host, forwarded as the /api prefixes are (docs/openai.md); /v1/chat/completions
# and /v1/models are the gateway's own.
V1_ROUTES = {
    "files": "datasets",
    "uploads": "datasets",
    "fine_tuning": "scheduler",
}

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# An answer's length goes back as the owner announced it (the bytes are relayed raw, so it holds): a download
# shows its progress, and one cut short is seen as broken, to resume with a range (services/common/ranges.py).
ANSWER_DROPS = HOP_BY_HOP - {"content-length"}
METHODS = [HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.PATCH, HttpMethod.DELETE]


def new_client() -> httpx.AsyncClient:
    """One pooled client for all upstream calls; no read timeout, since bodies may stream for long."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=3.0, read=None, write=None, pool=10.0),
        limits=httpx.Limits(max_connections=500, max_keepalive_connections=100),
        follow_redirects=False,
    )


def upstream_headers(request: Request) -> dict[bytes, bytes]:
    """The client's headers as its bytes were (Latin-1 both ways, as the ASGI server decoded them: httpx would refuse a
    non-ASCII `str`), less the hop-by-hop ones, plus the forwarding ones."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    peer = request.client.host if request.client else "unknown"
    prior = request.headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{prior}, {peer}" if prior else peer
    headers["x-forwarded-proto"] = request.url.scheme
    headers.setdefault("x-request-id", uuid.uuid4().hex)
    return {k.encode("latin-1"): v.encode("latin-1") for k, v in headers.items()}


def _has_body(request: Request) -> bool:
    return "content-length" in request.headers or "transfer-encoding" in request.headers


# A path segment that would mean something else once decoded upstream: a dot-segment, an encoded slash or
# backslash, a control character (httpx refuses those in a URL; Postgres refuses NUL).
_BAD_SEGMENT_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")


def raw_target(request: Request) -> str:
    """The path and query exactly as the client encoded them, so that an encoded `?`, `#` or `/` in an id
    stays part of that id upstream. A path whose segments decode to a dot-segment, a slash or a control
    character names no resource: 404."""
    raw = request.scope.get("raw_path") or quote(request.url.path).encode()
    path = raw.decode("latin-1")
    for segment in path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", "..") or _BAD_SEGMENT_CHARS.search(decoded):
            raise ApiError(
                404,
                "not_found",
                "no such resource: a path segment is an encoded slash, a dot-segment or a control character",
            )
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


async def forward(request: Request, service: str, client: httpx.AsyncClient, settings: GatewaySettings) -> Response:
    """Send the request on to `service` and stream its answer back, holding one of the service's places until the
    answer has been relayed (or the client has gone)."""
    upstreams = limits_of(request.app).upstreams
    if not upstreams.enter(service):
        raise ApiError(
            503,
            "service_busy",
            f"the {service} service has too many requests in flight; retry shortly",
            headers={"Retry-After": "1"},
        )
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            upstreams.leave(service)

    try:
        upstream = await _send(request, service, client, settings)
    except BaseException:
        release()
        raise
    headers = {k.lower(): v for k, v in upstream.headers.items() if k.lower() not in ANSWER_DROPS}
    media_type = headers.pop("content-type", "application/octet-stream")
    if request.method != "HEAD" and _small(upstream):
        # Read whole before a byte goes out: an upstream that dies mid-answer is then a clean 503/502 (lost_answer)
        # that a client can act on, not a response cut after its headers (found by the idempotency burst test).
        try:
            body = await upstream.aread()
        except httpx.TransportError as exc:
            log.warning("%s lost %s %s while answering: %r", service, request.method, request.url.path, exc)
            raise lost_answer(request, service) from exc
        finally:
            release()
            await upstream.aclose()
        headers.pop("content-length", None)
        return Response(body, status_code=upstream.status_code, headers=headers, media_type=media_type)

    async def relayed() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            release()
            await upstream.aclose()

    async def closed() -> None:  # also when the stream never started (the client left first)
        release()
        await upstream.aclose()

    return Stream(
        relayed(),
        status_code=upstream.status_code,
        headers=headers,
        media_type=media_type,
        background=BackgroundTask(closed),
    )


async def _send(request: Request, service: str, client: httpx.AsyncClient, settings: GatewaySettings) -> httpx.Response:
    """The upstream's answer (its headers; the body still to read). A body that pauses too long ends the call. With
    several replicas (LLMCT_<SERVICE>_URLS), one that cannot be reached passes the request to the next: nothing
    was sent to it, and the body was not read yet."""
    body = paced(request.stream(), settings.body_idle_s) if _has_body(request) else None
    urls = REPLICAS.order(settings.upstreams(service))
    for index, url in enumerate(urls):
        upstream_request = client.build_request(
            request.method, url + raw_target(request), headers=upstream_headers(request), content=body
        )
        try:
            answer = await client.send(upstream_request, stream=True)
        except BodyCut as exc:
            raise exc.error() from None
        except httpx.LocalProtocolError as exc:
            raise ApiError(400, "bad_request", f"the request cannot be forwarded: {exc}") from exc
        except NEVER_SENT as exc:
            REPLICAS.unreachable(url)
            log.warning("%s unreachable at %s: %s", service, url, exc)
            if index + 1 < len(urls):
                continue
            raise ApiError(
                503,
                "service_unavailable",
                f"the {service} service is not reachable; nothing was sent to it, retry shortly",
                headers={"Retry-After": RETRY_AFTER_S},
            ) from exc
        except httpx.TransportError as exc:
            log.warning("%s lost %s %s after it was sent: %r", service, request.method, request.url.path, exc)
            raise lost_answer(request, service) from exc
        REPLICAS.reached(url)
        return answer
    raise AssertionError("a service has at least one URL")


# Errors raised before a byte of the request left: the upstream cannot have acted on it.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
RETRY_AFTER_S = "2"
# Methods a repeat of which changes nothing more (RFC 9110 §9.2.2), and the POSTs that honour Idempotency-Key.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
KEYED_POSTS = frozenset({"/api/jobs", "/api/evals", "/api/deployments", "/v1/fine_tuning/jobs"})
IDEMPOTENCY_KEY = "idempotency-key"


def safe_to_repeat(request: Request) -> bool:
    """Whether sending the request again cannot do twice what it asks: an idempotent method, or a POST to a route
    that honours its Idempotency-Key."""
    if request.method in IDEMPOTENT_METHODS:
        return True
    keyed = request.method == "POST" and request.url.path.rstrip("/") in KEYED_POSTS
    return keyed and bool(request.headers.get(IDEMPOTENCY_KEY))


WHOLE_ANSWER_MAX = 256 * 1024  # answers up to this size (the API's JSON) are read whole before being relayed


def _small(upstream: httpx.Response) -> bool:
    """An answer of a known, small length that is not a stream of events: read whole, then relayed."""
    length = upstream.headers.get("content-length", "")
    if not length.isdigit() or int(length) > WHOLE_ANSWER_MAX:
        return False
    return not upstream.headers.get("content-type", "").startswith("text/event-stream")


def lost_answer(request: Request, service: str) -> ApiError:
    """The request reached `service`, which then went away without answering: it may have been carried out. A 503
    (retry) only when a retry cannot carry it out twice; otherwise a 502 saying the outcome is unknown (as Stripe's
    advice for a network error after a request was sent: look, or retry with the same idempotency key)."""
    if safe_to_repeat(request):
        return ApiError(
            503,
            "service_unavailable",
            f"the {service} service went away before answering; retry shortly (the same request, with the same "
            "Idempotency-Key where one was sent: it is carried out at most once)",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    return ApiError(
        502,
        "outcome_unknown",
        f"the {service} service went away after it received the request and before it answered: the request may or "
        "may not have been carried out. Look before you send it again (e.g. GET /api/jobs); send an Idempotency-Key "
        "header with a new request so that a retry is safe",
    )


def proxy_route(prefix: str, service: str, root: str = "api"):
    """A route handler forwarding /<root>/<prefix> and everything under it."""

    # No body cap here (Litestar's default is 10 MB): the owning service sets its own, e.g. dataset uploads.
    # The first two levels are plain segments, not one catch-all, so that a gateway route of its own under
    # a prefix (POST /api/deployments/{id}/chat) wins: Litestar prefers a literal segment to a parameter,
    # but a `path` parameter to anything.
    base = f"/{root}/{prefix}"
    paths = [base, base + "/{a:str}", base + "/{a:str}/{b:str}", base + "/{a:str}/{b:str}/{rest:path}"]

    @route(
        path=paths,
        http_method=METHODS,
        opt={"public": True},
        include_in_schema=False,
        name=f"proxy-{root}-{prefix}",
        request_max_body_size=None,
        # The gateway's own answers on OpenAI's routes (an owner away, too busy) in OpenAI's shape too.
        exception_handlers=OPENAI_EXCEPTION_HANDLERS if root == "v1" else None,  # pyright: ignore[reportArgumentType]
    )
    async def handler(request: Request, http: httpx.AsyncClient, settings: Injected[GatewaySettings]) -> Response:
        # The owning service authenticates the caller itself (one shared guard).
        return await forward(request, service, http, settings)

    return handler


PROXY_HANDLERS = [proxy_route(prefix, service) for prefix, service in ROUTES.items()] + [
    proxy_route(prefix, service, "v1") for prefix, service in V1_ROUTES.items()
]
