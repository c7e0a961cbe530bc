"""The gateway's HTTP server: uvicorn's, with a deadline on each request's line and headers.

uvicorn waits for headers as long as a client cares to send them, one byte at a time (slowloris): each such
connection is held for ever. Here a request whose headers are not complete LLMCT_GATEWAY_HEADER_TIMEOUT_S after
its first byte (or after the connection opened) is answered 408 and its connection closed.
"""

from __future__ import annotations

import asyncio

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.errors import error_body

_BODY = msgspec.json.encode(error_body("request_timeout", "the request's headers took too long to arrive"))
TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request headers take too long."""

    header_timeout_s: float = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.write(TIMED_OUT)
            self.transport.close()


def server_options(header_timeout_s: float) -> dict:
    """uvicorn.run's options for the gateway: its protocol with the deadline set."""
    protocol = type("GatewayHttpProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s})
    return {"http": protocol}
