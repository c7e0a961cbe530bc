"""The order in which the gateway tries a service's replicas (services/gateway/replicas.py)."""

import pytest

from services.common.settings import settings_from_env
from services.gateway.replicas import Replicas

pytestmark = pytest.mark.unit

URLS = ("http://a", "http://b", "http://c")


def test_each_replica_in_turn():
    replicas = Replicas()
    firsts = [replicas.order(URLS)[0] for _ in range(6)]
    assert firsts == ["http://a", "http://b", "http://c", "http://a", "http://b", "http://c"]
    assert sorted(replicas.order(URLS)) == sorted(URLS), "every replica is in every order"


def test_an_unreachable_replica_goes_last_for_a_while(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("services.gateway.replicas.time.monotonic", lambda: now[0])
    replicas = Replicas(skip_s=2)
    replicas.unreachable("http://a")
    assert [replicas.order(URLS)[-1] for _ in range(3)] == ["http://a"] * 3
    now[0] += 3
    assert "http://a" in [replicas.order(URLS)[0] for _ in range(3)], "tried first again once the while is over"
    replicas.unreachable("http://b")
    replicas.reached("http://b")  # it answered again: no longer put last
    assert [replicas.order(("http://b", "http://c"))[0] for _ in range(2)] == ["http://b", "http://c"]


def test_one_url_is_just_that():
    assert Replicas().order(("http://only",)) == ["http://only"]


def test_urls_from_the_environment():
    settings = settings_from_env({"LLMCT_SCHEDULER_URLS": " http://10.0.0.5:8102/, http://10.0.0.6:8102 ,"})
    assert settings.upstreams("scheduler") == ("http://10.0.0.5:8102", "http://10.0.0.6:8102")
    assert settings.upstreams("auth") == (f"http://127.0.0.1:{settings.ports['auth']}",)
