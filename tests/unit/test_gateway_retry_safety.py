"""When the gateway may tell a client "retry" for a request its upstream received and never answered."""

import pytest
from litestar import Request

from services.gateway.proxy import lost_answer, safe_to_repeat

pytestmark = pytest.mark.unit


def request(method: str, path: str, key: str | None = None) -> Request:
    headers = [(b"idempotency-key", key.encode())] if key is not None else []
    scope = {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""}
    return Request(scope)  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize(
    ("method", "path", "key", "safe"),
    [
        ("GET", "/api/jobs", None, True),
        ("DELETE", "/api/datasets/ds_1", None, True),
        ("PUT", "/api/quotas/usr_1", None, True),
        ("POST", "/api/jobs", "k-1", True),
        ("POST", "/api/jobs/", "k-1", True),
        ("POST", "/api/evals", "k-1", True),
        ("POST", "/api/deployments", "k-1", True),
        ("POST", "/v1/fine_tuning/jobs", "k-1", True),
        ("POST", "/api/jobs", None, False),
        ("POST", "/api/jobs", "", False),
        ("POST", "/api/jobs/job_1/retry", "k-1", False),  # a route that ignores the key
        ("POST", "/api/auth/api-keys", "k-1", False),
        ("PATCH", "/api/models/m_1", None, False),
    ],
)
def test_a_repeat_is_safe_only_when_it_cannot_act_twice(method, path, key, safe):
    assert safe_to_repeat(request(method, path, key)) is safe
    error = lost_answer(request(method, path, key), "scheduler")
    if safe:
        assert (error.status, error.code, error.headers.get("Retry-After")) == (503, "service_unavailable", "2")
    else:
        assert (error.status, error.code, error.headers) == (502, "outcome_unknown", {})
        assert "may or may not have been carried out" in error.message
