"""The fleet pages in a real browser, against the whole stack: an admin sees the e2e agent online with its
heartbeat, drains and undrains it, and opens its resource history; a user sees only the capacity summary."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .conftest import E2E_AGENT
from .helpers import TABLET, keep_screenshot, log_in_as_admin, signed_in_page

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def admin_page(web_prerequisites, browser, stack) -> Iterator[Page]:
    context = browser.new_context(base_url=stack.gateway_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in_as_admin(page, stack, "/jobs", "Jobs")
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def test_admin_fleet(admin_page: Page, tmp_path):
    page = admin_page
    page.get_by_role("link", name="Agents", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Agents")).to_be_visible()
    card = page.get_by_role("article", name=E2E_AGENT)
    expect(card.locator(".pill")).to_have_text("Online")
    expect(card).to_contain_text(re.compile(r"heartbeat 0:0\d ago"))
    expect(card).to_contain_text("No GPU on this agent")
    keep_screenshot(page, tmp_path, "agents.png")

    page.get_by_label("State").select_option("offline")
    expect(page.get_by_role("article", name=E2E_AGENT)).to_have_count(0)
    page.get_by_label("State").select_option("")

    # Drained for a moment only: the other tests need this agent.
    card.get_by_role("button", name=re.compile(f"^Drain {E2E_AGENT}")).click()
    try:
        expect(card.locator(".pill")).to_have_text("Draining")
    finally:
        card.get_by_role("button", name=re.compile(f"^Undrain {E2E_AGENT}")).click()
    expect(card.locator(".pill")).to_have_text("Online")

    card.get_by_role("link", name=E2E_AGENT).click()
    expect(page.get_by_role("heading", level=1, name=f"Agent {E2E_AGENT}")).to_be_visible()
    expect(page.get_by_role("heading", name="Resource history")).to_be_visible()
    expect(
        page.locator(".chart__plot canvas").first.or_(page.get_by_text("No samples in this period."))
    ).to_be_visible()
    keep_screenshot(page, tmp_path, "agent.png")
    page.set_viewport_size(TABLET)
    keep_screenshot(page, tmp_path, "agent-tablet.png")

    page.get_by_role("link", name="Deployments", exact=True).click()
    expect(page.get_by_text("everyone's deployments")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Owner").or_(page.get_by_text("No deployments yet."))).to_be_visible()


def test_user_sees_the_summary_only(browser, stack, tmp_path):
    page, errors = signed_in_page(browser, stack, f"web-fleet-{secrets.token_hex(3)}")
    try:
        page.get_by_role("link", name="Agents", exact=True).click()
        expect(page.get_by_role("heading", name="Capacity")).to_be_visible()
        expect(page.get_by_text("No GPU online.")).to_be_visible()
        expect(page.get_by_role("article")).to_have_count(0)
        assert E2E_AGENT not in page.content()
        keep_screenshot(page, tmp_path, "agents-user.png")
        page.get_by_label("Language").select_option("zh")
        page.get_by_role("link", name="部署", exact=True).click()
        expect(page.get_by_role("heading", level=1, name="部署")).to_be_visible()
        page.get_by_role("link", name="打开在线体验").click()
        expect(page.get_by_role("heading", level=1, name="在线体验")).to_be_visible()
        page.set_viewport_size(TABLET)
        keep_screenshot(page, tmp_path, "playground-zh-tablet.png")
    finally:
        page.context.close()
    assert not errors, errors


def test_admin_makes_and_revokes_a_join_token(admin_page: Page, stack, tmp_path):
    page = admin_page
    page.get_by_role("link", name="Agents", exact=True).click()
    section = page.get_by_role("region", name="Join a GPU host")
    note = f"rack-{secrets.token_hex(3)}"
    section.get_by_label("Uses").fill("2")
    section.get_by_label("Note").fill(note)
    section.get_by_role("button", name="Create join token").click()
    command = section.get_by_label("Join command")
    expect(command).to_have_value(re.compile(rf"^llmct agent join {re.escape(stack.gateway_url)} llmct_join_\S{{43}}$"))
    token = command.input_value().rsplit(" ", 1)[1]
    row = section.get_by_role("row", name=re.compile(note))
    expect(row).to_contain_text("0 / 2")
    expect(row).to_contain_text("Active")
    assert token not in row.inner_text()  # listed by its prefix only
    keep_screenshot(page, tmp_path, "join-tokens.png")

    page.reload()  # shown once: gone after a reload
    expect(section.get_by_label("Join command")).to_have_count(0)
    assert token not in page.content()
    row = section.get_by_role("row", name=re.compile(note))
    row.get_by_role("button", name=re.compile("^Revoke join token")).click()
    row.get_by_role("button", name="Yes, revoke").click()
    expect(row).to_contain_text("Revoked")
    answer = page.request.post("/api/agents/join", data={"token": token, "hostname": "late-host"})
    assert answer.status == 403 and answer.json()["error"]["code"] == "join_token_revoked"
