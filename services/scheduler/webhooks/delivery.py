"""The delivery worker: a background part of the scheduler that sends what the outbox holds.

It has its own loop and its own HTTP client: it claims due deliveries (FOR UPDATE SKIP LOCKED, so replicas share
them), holds no database connection while a request is out, and sends at most LLMCT_WEBHOOK_CONCURRENCY at once, so a
receiver that hangs costs one slot for LLMCT_WEBHOOK_TIMEOUT_S and never a handler of the scheduler's. Each request is
signed as Standard Webhooks says (`webhook-id`, `webhook-timestamp`, `webhook-signature`), goes to the address that
was checked (addresses.py), follows no redirect; a 2xx is delivered, anything else is tried again after the next delay
of LLMCT_WEBHOOK_RETRY_S, then `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import msgspec
from standardwebhooks.webhooks import Webhook

from services.common.lifecycle import Background

from ..context import SchedulerContext
from ..settings import WebhookSettings
from . import store
from .addresses import Allowed, Refused, checked_address, pinned_url
from .secrets import endpoint_secret

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 30.0  # a claimed delivery is due again this long after its request's timeout
USER_AGENT = "llmct-webhooks/1"
MAX_ERROR = 500


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def retry_delays(settings: WebhookSettings) -> tuple[float, ...]:
    """LLMCT_WEBHOOK_RETRY_S as seconds."""
    return tuple(float(part) for part in settings.webhook_retry_s.split(",") if part.strip())


def signed_headers(secret: str, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


async def send(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes, allowed: Allowed, deadline_s: float
) -> Outcome:
    """One attempt: the host resolved and checked now, the request sent to the checked address, the whole of it
    within `deadline_s` (a receiver that trickles its answer is cut off too)."""
    try:
        parts, ip = await checked_address(url, allowed)
    except Refused as exc:
        return Outcome(False, error=f"refused: {exc}")
    request_headers = {**headers, "host": parts.netloc}
    extensions = {"sni_hostname": parts.hostname or ""} if parts.scheme == "https" else {}
    request = client.build_request("POST", pinned_url(parts, ip), content=body, headers=request_headers)
    request.extensions.update(extensions)
    try:
        async with asyncio.timeout(deadline_s):
            answer = await client.send(request, stream=True)
            try:
                head = await _head_of(answer)
            finally:
                await answer.aclose()
    except TimeoutError:
        return Outcome(False, error=f"no answer within {deadline_s:g} s")
    except httpx.HTTPError as exc:
        return Outcome(False, error=(f"{type(exc).__name__}: {exc}")[:MAX_ERROR])
    if 200 <= answer.status_code < 300:
        return Outcome(True, answer.status_code)
    return Outcome(False, answer.status_code, f"answered {answer.status_code}: {head}"[:MAX_ERROR])


async def _head_of(answer: httpx.Response) -> str:
    """The first bytes of an answer's body (what a log needs; never the whole of a large one)."""
    kept = b""
    async for chunk in answer.aiter_raw():
        kept += chunk
        if len(kept) >= MAX_ERROR:
            break
    return kept[:MAX_ERROR].decode(errors="replace")


class Deliverer:
    """Claims due deliveries and sends each in a task of its own, at most `concurrency` at once."""

    def __init__(self, context: SchedulerContext, client: httpx.AsyncClient):
        self.context = context
        self.settings = context.scheduler_settings
        self.client = client
        self.allowed = Allowed.parse(self.settings.webhook_allow)
        self.delays = retry_delays(self.settings)
        self.in_flight: set[asyncio.Task] = set()

    async def pass_once(self) -> int:
        """Start sending what is due, as many as there are free slots; how many started."""
        room = self.settings.webhook_concurrency - len(self.in_flight)
        if room <= 0:
            return 0
        lease = self.settings.webhook_timeout_s + LEASE_MARGIN_S
        async with self.context.pool.acquire() as conn:
            claimed = await store.claim_due(conn, room, lease)
        for row in claimed:
            task = asyncio.create_task(self.deliver(row))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        return len(claimed)

    async def deliver(self, row) -> None:
        """Send one claimed delivery and record what came of it."""
        started = time.monotonic()
        try:
            secret = endpoint_secret(self.context.settings.secret_key, row["secret_salt"])
            body = msgspec.json.encode(row["payload"])
            headers = signed_headers(secret, row["id"], body, datetime.now(UTC))
            outcome = await send(self.client, row["url"], headers, body, self.allowed, self.settings.webhook_timeout_s)
        except Exception as exc:  # a bug of ours counts as a failed attempt: retried, then `failed`, never for ever
            log.exception("webhook delivery %s not sent", row["id"])
            outcome = Outcome(False, error=f"not sent: {type(exc).__name__}")
        latency_ms = int((time.monotonic() - started) * 1000)
        attempt = row["attempts"]
        retry_in = None if outcome.delivered or attempt > len(self.delays) else self.delays[attempt - 1]
        if not outcome.delivered:
            log.info("webhook %s attempt %d not delivered: %s", row["id"], attempt, outcome.error)
        try:
            async with self.context.pool.acquire() as conn:
                await store.record_result(
                    conn,
                    row["id"],
                    attempt,
                    delivered=outcome.delivered,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    latency_ms=latency_ms,
                    retry_in_s=retry_in,
                )
        except Exception:  # the lease brings it back: sent again, at least once
            log.exception("the result of webhook delivery %s was not recorded", row["id"])

    async def drain(self) -> None:
        """Cancel what is still out (its lease brings it back to this or another replica)."""
        for task in list(self.in_flight):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self.in_flight, return_exceptions=True)


def new_client(settings: WebhookSettings) -> httpx.AsyncClient:
    """The worker's own client: no redirects, no proxies from the environment, a connection per slot at most."""
    return httpx.AsyncClient(
        timeout=settings.webhook_timeout_s,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=settings.webhook_concurrency, max_keepalive_connections=0),
    )


async def deliver_forever(context: SchedulerContext) -> None:
    """Every LLMCT_WEBHOOK_POLL_S, start what is due; on shutdown, cancel what is out."""
    settings = context.scheduler_settings
    async with new_client(settings) as client:
        deliverer = Deliverer(context, client)
        try:
            while True:
                try:
                    await deliverer.pass_once()
                except Exception:
                    log.exception("webhook deliveries not claimed")
                await asyncio.sleep(settings.webhook_poll_s)
        finally:
            await deliverer.drain()


BACKGROUND = (Background(name="webhook deliveries", run=deliver_forever),)
