"""The gateway's word on the services behind it (services/gateway/upstreams.py): down when no replica answers,
one of several down said but not counted, replicas named by place (never by address), answers kept a moment."""

from __future__ import annotations

import httpx
import pytest

from services.gateway.upstreams import UpstreamHealth

pytestmark = pytest.mark.unit


def client(answers: dict[str, int | None], asked: list[str]) -> httpx.AsyncClient:
    """Each host answers its status, or refuses the connection (None)."""

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        status = answers[request.url.host]
        if status is None:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, json={"status": "ok" if status == 200 else "degraded"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


async def test_a_service_is_down_only_when_no_replica_answers():
    asked: list[str] = []
    replicas = {"scheduler": ("http://s1", "http://s2"), "auth": ("http://a1",), "registry": ("http://r1",)}
    async with client({"s1": 200, "s2": None, "a1": 503, "r1": 200}, asked) as http:
        found = await UpstreamHealth(http, replicas).check()
    assert found["scheduler"] == (True, "1 of 2 replicas down (#2: unreachable: ConnectError)")
    assert found["auth"] == (False, "answers 503 (degraded)")
    assert found["registry"] == (True, "ok")
    assert "s2" not in found["scheduler"][1], "replicas by place, not address: /health is public"


async def test_answers_are_kept_a_moment():
    asked: list[str] = []
    async with client({"a1": 200}, asked) as http:
        health = UpstreamHealth(http, {"auth": ("http://a1",)})
        for _ in range(5):
            await health.check()
    assert asked == ["a1"], "one question per CACHE_S however often /health is polled"
