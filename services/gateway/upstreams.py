"""The gateway's /health asks the services behind it: a gateway whose scheduler is down is not healthy, and says
which one. Each replica's /health is asked with a short timeout, all at once, and the answers kept a moment, so a
load balancer polling the gateway costs the services one request per `CACHE_S` at most. A service is down when none
of its replicas answers 200 (the gateway then cannot serve it); one of several down is said, not counted."""

from __future__ import annotations

import asyncio
import time

import httpx

from .proxy import ROUTES

CACHE_S = 1.5
TIMEOUT_S = 1.0

UPSTREAMS = tuple(sorted(set(ROUTES.values())))
"""The services the gateway forwards to (the agent is not one: it is reached over NATS only)."""


class UpstreamHealth:
    """Each upstream's health, asked at most once per `CACHE_S`: name -> (up, what to say)."""

    def __init__(self, http: httpx.AsyncClient, replicas: dict[str, tuple[str, ...]]) -> None:
        self._http, self._replicas = http, replicas
        self._lock = asyncio.Lock()
        self._checked_at = float("-inf")
        self._found: dict[str, tuple[bool, str]] = {}

    async def check(self) -> dict[str, tuple[bool, str]]:
        async with self._lock:  # one round of questions at a time; callers meanwhile get its answer
            if time.monotonic() - self._checked_at >= CACHE_S:
                names = list(self._replicas)
                found = await asyncio.gather(*(self._service(self._replicas[name]) for name in names))
                self._found = dict(zip(names, found, strict=True))
                self._checked_at = time.monotonic()
            return dict(self._found)

    async def _service(self, urls: tuple[str, ...]) -> tuple[bool, str]:
        problems = await asyncio.gather(*(self._ask(url) for url in urls))
        bad = [(url, problem) for url, problem in zip(urls, problems, strict=True) if problem is not None]
        if not bad:
            return True, "ok"
        if len(urls) == 1:
            return False, bad[0][1]
        # Replicas by their place in LLMCT_<SERVICE>_URLS, not their address: the gateway's /health is public.
        said = "; ".join(f"#{urls.index(url) + 1}: {problem}" for url, problem in bad)
        return len(bad) < len(urls), f"{len(bad)} of {len(urls)} replicas down ({said})"

    async def _ask(self, base_url: str) -> str | None:
        try:
            response = await self._http.get(f"{base_url}/health", timeout=TIMEOUT_S)
        except httpx.HTTPError as exc:
            return f"unreachable: {exc.__class__.__name__}"
        if response.status_code == 200:
            return None
        try:
            status = response.json().get("status", "")
        except ValueError:
            status = ""
        return f"answers {response.status_code}" + (f" ({status})" if status else "")
