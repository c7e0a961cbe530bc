"""Which replica of a service the gateway sends a request to (LLMCT_<SERVICE>_URLS): each in turn, a replica that
could not be reached a moment ago last. A request that could not reach one (nothing was sent: services/gateway/
proxy.py, NEVER_SENT) goes on to the next, so a replica that dies costs its callers nothing but a refused connect."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

SKIP_S = 2.0  # a replica that refused a connection goes last for this long


class Replicas:
    def __init__(self, skip_s: float = SKIP_S) -> None:
        self.skip_s = skip_s
        self._turns: dict[tuple[str, ...], itertools.count] = {}
        self._down_until: dict[str, float] = {}

    def order(self, urls: Sequence[str]) -> list[str]:
        """`urls` in the order to try them: starting at the next in turn, those down a moment ago at the end."""
        if len(urls) == 1:
            return list(urls)
        turn = next(self._turns.setdefault(tuple(urls), itertools.count())) % len(urls)
        rotated = [*urls[turn:], *urls[:turn]]
        now = time.monotonic()
        return sorted(rotated, key=lambda url: self._down_until.get(url, 0.0) > now)

    def unreachable(self, url: str) -> None:
        self._down_until[url] = time.monotonic() + self.skip_s

    def reached(self, url: str) -> None:
        self._down_until.pop(url, None)


REPLICAS = Replicas()  # one per gateway process: the proxy and the chat routes share the turns
