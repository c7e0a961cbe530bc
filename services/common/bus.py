"""The NATS connection every service owns, and idempotent stream set-up."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, ConnectionReconnectingError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from .contracts import STREAMS

log = logging.getLogger(__name__)

DRAIN_S = 0.005  # how long a consumer's turn waits for more messages once it has one


async def connect_bus(
    url: str,
    name: str,
    on_reconnect: list | None = None,
    *,
    user: str | None = None,
    password: str | None = None,
    creds: str | None = None,
    inbox_prefix: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> Client:
    """Connect to NATS and keep reconnecting forever; publishes are buffered meanwhile.

    `on_reconnect` holds coroutine functions run after each reconnect (the list may grow later). `user` and
    `password` (or a `creds` file) authenticate; an agent passes its own `inbox_prefix`, the only inboxes
    its NATS user may read (services/common/nats_auth.py). `tls` (`tls_context`) makes every connection TLS,
    verified against the platform's CA; when not given, the process's NATS_TLS_* settings decide (`tls_from_env`),
    so every service and agent speaks TLS once they are set. A server that requires TLS refuses a client without
    the CA: its certificate is not signed by one the system trusts.
    """
    if tls is None:
        tls = tls_from_env()
    auth: dict = {"user": user, "password": password} if user else {}
    if creds:
        auth["user_credentials"] = creds
    if inbox_prefix:
        auth["inbox_prefix"] = inbox_prefix
    if tls is not None:
        auth["tls"] = tls
    hooks = on_reconnect if on_reconnect is not None else []

    async def on_disconnect() -> None:
        log.warning("%s: NATS disconnected", name)

    async def reconnected() -> None:
        log.info("%s: NATS reconnected", name)
        for hook in hooks:
            await hook()

    async def on_error(exc: Exception) -> None:
        log.warning("%s: NATS error: %s", name, exc)

    servers = [part.strip() for part in url.split(",") if part.strip()]  # a cluster: nats://n1:4222,nats://n2:4222
    return await nats.connect(
        servers,
        name=f"llmct-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        pending_size=64 * 1024 * 1024,
        disconnected_cb=on_disconnect,
        reconnected_cb=reconnected,
        error_cb=on_error,
        **auth,
    )


def tls_context(ca: str | None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext | None:
    """The TLS settings of a NATS connection (NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY): None without a CA, else a
    context that trusts only that CA, checks the server's host name, and shows `cert` when the server asks."""
    if not ca:
        if cert or key:
            raise ValueError("NATS_TLS_CERT and NATS_TLS_KEY need NATS_TLS_CA")
        return None
    if bool(cert) != bool(key):
        raise ValueError("NATS_TLS_CERT and NATS_TLS_KEY go together")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, key)
    return context


def tls_from_env() -> ssl.SSLContext | None:
    """`tls_context` of this process's NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY settings (None: plain TCP)."""
    from .settings import settings_from_env  # not at the top: settings -> storage -> objects -> this module

    settings = settings_from_env()
    return tls_context(settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key)


def urls_without_credentials(given: str) -> list[str]:
    """Each URL of a comma-separated NATS_URL (a cluster: one per node) without the user and password in it."""
    urls = []
    for url in filter(None, (part.strip() for part in given.split(","))):
        parts = urlsplit(url)
        if parts.hostname is None:  # the URL is not echoed: it may carry credentials
            raise ValueError("a NATS URL has no host name")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        urls.append(urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else ""))))
    return urls


STREAM_SETUP_S = 60.0  # a cluster that several services reach at once creates R3 streams slowly: their wait


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create every stream with `replicas` copies (LLMCT_NATS_REPLICAS), or bring an existing one up to date with
    its definition (a cluster grown from one node to three gets its streams replicated here). A stream already as
    defined is left alone, so services starting side by side do not update each other's streams in turn; a call
    that times out (a cluster busy electing or creating) is asked again for up to STREAM_SETUP_S."""
    deadline = asyncio.get_running_loop().time() + STREAM_SETUP_S
    for config in (dataclasses.replace(stream, num_replicas=replicas) for stream in STREAMS):
        if config.name is None:  # StreamConfig allows it, but a stream is found by its name
            raise RuntimeError(f"stream of {config.subjects} has no name")
        while True:
            try:
                await _ensure_stream(js, config)
                break
            except (NatsTimeout, ServiceUnavailableError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.info("stream %s: JetStream is busy, asking again", config.name)
                await asyncio.sleep(1)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    name = config.name or ""
    try:
        found = (await js.stream_info(name)).config
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError:  # another service created it first
            found = (await js.stream_info(name)).config
    wanted = config.as_dict()
    if {key: value for key, value in found.as_dict().items() if key in wanted} != wanted:
        await js.update_stream(config)


async def set_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Give a stream (a bucket's too: `OBJ_<bucket>`, `KV_<bucket>`) `replicas` copies, when it has another number."""
    config = (await js.stream_info(stream)).config
    if (config.num_replicas or 1) != replicas:
        config.num_replicas = replicas
        await js.update_stream(config)


async def bus_is_healthy(nc: Client | None) -> str | None:
    """None when NATS answers, else what is wrong."""
    if nc is None or not nc.is_connected:
        return "not connected"
    try:
        await nc.flush(timeout=1)
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return f"flush failed: {exc.__class__.__name__}"
    return None


async def close_bus(nc: Client) -> None:
    """Drain (deliver what is buffered, finish handlers), or just close when NATS is away."""
    try:
        await nc.drain()
    except (ConnectionReconnectingError, ConnectionClosedError):
        with contextlib.suppress(OSError):
            await nc.close()


async def consume(
    js: JetStreamContext,
    *,
    subject: str,
    durable: str,
    stream: str,
    handle: Callable[[object], Awaitable[None]],
    batch: int = 256,
    ack_wait: float = 30.0,
    max_ack_pending: int = 10_000,
) -> None:
    """Fetch from a durable pull consumer forever; `handle(msg)` acks or naks each message (or hands it on to
    something that will, within `ack_wait` or with `in_progress()`).

    Each turn waits for one message, handles it at once, then takes what else is waiting (up to `batch - 1`, within
    DRAIN_S). Not one `fetch(batch)`: nats-py's fetch of several, once it has a first message, waits for the rest
    until its pull request expires, so a message arriving near a turn's end sat there for up to the whole 1 s
    (measured: 90-470 ms for a few in 60 lone messages; 18 ms at most this way, at the same ~11k messages/s).
    Survives NATS going away: the loop waits and subscribes again.
    """
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        max_ack_pending=max_ack_pending,
        ack_wait=ack_wait,
        max_deliver=-1,
        filter_subject=subject,
    )
    sub = None
    this = asyncio.current_task()
    if this is None:  # the cancellation check below needs the task
        raise RuntimeError("consume must run inside an asyncio task")
    # nats-py's fetch can turn a cancellation into a timeout: check for one on every turn.
    try:
        while not this.cancelling():
            try:
                if sub is None:
                    sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
                for msg in await sub.fetch(batch=1, timeout=1.0):
                    await handle(msg)
                while batch > 1:  # ends with the timeout of a drain that found nothing
                    for msg in await sub.fetch(batch=batch - 1, timeout=DRAIN_S):
                        await handle(msg)
            except (TimeoutError, NatsTimeout):
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s failed; retrying", durable)
                await asyncio.sleep(1)
        raise asyncio.CancelledError
    finally:
        # Unacked fetched messages are redelivered; a drain must not wait on this inbox.
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
