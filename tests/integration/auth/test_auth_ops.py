"""What operators and tools read: /health, /metrics and the OpenAPI schema."""

import pytest

pytestmark = pytest.mark.integration


async def test_health_checks_postgres_and_nats(client):
    r = await client.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["service"] == "auth"
    assert body["checks"] == {"postgres": "ok", "nats": "ok"}


async def test_metrics_are_prometheus_text(client):
    await client.get("/health")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# HELP" in r.text and "# TYPE" in r.text
    assert "llmct_auth" in r.text


async def test_openapi_schema_lists_the_auth_routes(client):
    # Anonymous on purpose: the gateway fetches each service's schema without a token to merge them.
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200, r.text
    paths = r.json()["paths"]
    assert "post" in paths["/api/auth/login"]
    assert {"/api/auth/register", "/api/auth/me", "/api/auth/api-keys", "/api/auth/users"} <= set(paths)
