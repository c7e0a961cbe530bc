"""The gateway's HTTP server: uvicorn's, with a deadline and a size cap on each request's line and headers.

uvicorn waits for headers as long as a client cares to send them, one byte at a time (slowloris): each such
connection is held for ever. Here a request whose headers are not complete LLMCT_GATEWAY_HEADER_TIMEOUT_S after
its first byte (or after the connection opened) is answered 408, and one whose headers pass 64 KiB 431; either
way its connection is closed.
"""

from __future__ import annotations

import asyncio

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.errors import error_body

MAX_HEADER_BYTES = 64 * 1024
LINGER_S = 1.0


def _answer(status: bytes, code: str, message: str) -> bytes:
    body = msgspec.json.encode(error_body(code, message))
    head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
    return head % (status, len(body)) + body


TIMED_OUT = _answer(b"408 Request Timeout", "request_timeout", "the request's headers took too long to arrive")
TOO_LARGE = _answer(
    b"431 Request Header Fields Too Large",
    "headers_too_large",
    f"the request's line and headers are over {MAX_HEADER_BYTES // 1024} KiB",
)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request headers take too long."""

    header_timeout_s: float = 10.0
    _deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0

    _ending = False

    def data_received(self, data: bytes) -> None:
        if self._ending:  # answered and closing: read what is still coming, so the close is not a reset
            return
        super().data_received(data)
        if self._deadline is not None:  # still in a request's line and headers: uvicorn has no cap on their size
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._end(TOO_LARGE)

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
        self._header_bytes = 0
        self._deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self) -> None:
        self._deadline = None
        self._end(TIMED_OUT)

    def _end(self, answer: bytes) -> None:
        """Answer, then close once the client has had a moment to read it (a close with unread data is a reset)."""
        self._disarm()
        if not self.transport.is_closing() and not self._ending:
            self._ending = True
            self.transport.write(answer)
            self.loop.call_later(LINGER_S, self.transport.close)


def server_options(header_timeout_s: float) -> dict:
    """uvicorn.run's options for the gateway: its protocol with the deadline set."""
    protocol = type("GatewayHttpProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s})
    return {"http": protocol}
