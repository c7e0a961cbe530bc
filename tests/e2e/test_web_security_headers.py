"""The web client is served with security headers (issue 14, item 7): a content security policy that runs only
the client's own scripts and lets no page frame it, no type sniffing, no referrer; and the client still works
under that policy in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .helpers import heading

pytestmark = [pytest.mark.e2e]


def policy(value: str) -> dict[str, set[str]]:
    directives = (part.split() for part in value.split(";") if part.strip())
    return {name: set(sources) for name, *sources in directives}


@pytest.mark.parametrize("path", ["/", "/login", "/jobs/job_0123456789abcdef", "/favicon.svg"])
async def test_web_client_answers_carry_the_security_headers(gw, path):
    r = await gw.get(path)
    csp = policy(r.headers["content-security-policy"])
    assert csp["script-src"] == {"'self'"} and csp["frame-ancestors"] == {"'none'"}
    assert csp["object-src"] == {"'none'"} and csp["default-src"] == {"'self'"}
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


async def test_the_api_docs_page_cannot_be_framed(gw):
    r = await gw.get("/api/docs")
    assert r.status_code == 200
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"


def test_the_client_runs_under_its_policy(web_prerequisites, browser, stack):
    context = browser.new_context(base_url=stack.gateway_url)
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: refused.append(str(error)))
    try:
        response = page.goto("/login")
        assert response is not None and "frame-ancestors 'none'" in response.headers["content-security-policy"]
        expect(heading(page, "Log in")).to_be_visible(timeout=15_000)
    finally:
        context.close()
    assert not refused, f"the policy blocked part of the client: {refused}"
