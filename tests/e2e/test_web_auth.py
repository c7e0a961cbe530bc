"""The web client in a real browser, against the whole stack: register, log in, API keys, log out."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .helpers import heading, keep_screenshot, log_in_as_admin

pytestmark = [pytest.mark.e2e]

TOKEN_KEY = "llmct.access_token"


@pytest.fixture
def page(web_prerequisites, browser, stack) -> Iterator[Page]:
    context = browser.new_context(base_url=stack.gateway_url, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    index = page.request.get("/login")
    content_type = index.headers.get("content-type", "")
    assert index.ok and content_type.startswith("text/html"), (
        f"the gateway must serve index.html for client routes as text/html, inline; it answered {index.status} "
        f"{content_type!r} {index.headers.get('content-disposition', '')!r}, "
        "which a browser downloads instead of showing"
    )
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def test_register_login_api_key_logout(page: Page, stack, tmp_path):
    username = f"web-{secrets.token_hex(3)}"
    password = "bright-meadow-4821"

    page.goto("/")
    expect(heading(page, "Log in")).to_be_visible()

    page.get_by_role("link", name="Create an account").click()
    expect(heading(page, "Create an account")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("short")
    page.get_by_label("Invite code").fill(stack.invite_code)
    page.get_by_role("button", name="Create account").click()
    password_field = page.get_by_label("Password")
    expect(password_field).to_have_attribute("aria-invalid", "true")
    expect(password_field).to_have_accessible_description(re.compile("at least 10 characters"))
    expect(password_field).to_be_focused()
    keep_screenshot(page, tmp_path, "register-weak-password.png")

    password_field.fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(heading(page, "Log in")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Account created")
    expect(page.get_by_label("Username")).to_have_value(username)

    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(heading(page, "Jobs")).to_be_visible()
    page.get_by_role("link", name=f"Account ({username})").click()
    expect(heading(page, "Account")).to_be_visible()
    expect(page).to_have_url(f"{stack.gateway_url}/account")
    profile = page.get_by_role("region", name="Profile")
    expect(profile).to_contain_text(username)
    expect(profile).to_contain_text("User")

    page.get_by_label("Key name").fill("e2e-laptop")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_role("region", name="Copy your new API key now")
    expect(secret).to_contain_text("This is the only time it is shown")
    key = secret.get_by_label("New API key “e2e-laptop”").input_value()
    row = page.get_by_role("row", name=re.compile("e2e-laptop"))
    expect(row).to_contain_text(key[:10])
    keep_screenshot(page, tmp_path, "account.png")

    # The key shown is a working credential.
    me = page.request.get("/api/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status == 200 and me.json()["username"] == username

    page.get_by_role("button", name="I have stored it").click()
    expect(page.get_by_role("region", name="Copy your new API key now")).to_have_count(0)
    page.reload()
    expect(page.get_by_role("row", name=re.compile("e2e-laptop"))).to_be_visible()
    assert key not in page.content(), "the key must be shown only once"

    token = page.evaluate(f"localStorage.getItem('{TOKEN_KEY}')")
    page.get_by_role("button", name="Log out").click()
    expect(heading(page, "Log in")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("You have been logged out")
    assert page.evaluate(f"localStorage.getItem('{TOKEN_KEY}')") is None
    ended = page.request.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert ended.status == 401, "logging out must end the session on the server too"

    page.goto("/account")
    expect(heading(page, "Log in")).to_be_visible()
    assert page.url.endswith("/login?next=%2Faccount")


def test_admin_creates_an_invite(page: Page, stack, tmp_path):
    log_in_as_admin(page, stack, "/account", "Account")

    invites = page.get_by_role("region", name="Invite codes")
    invites.get_by_label("Uses").fill("2")
    invites.get_by_role("button", name="Create invite").click()
    code = invites.get_by_label("New invite code").input_value()
    expect(invites.get_by_role("row", name=re.compile(re.escape(code)))).to_contain_text("0 / 2")
    keep_screenshot(page, tmp_path, "account-admin.png")

    # Limits: the admin raises one user's GPU limit and puts it back; accounts are listed by name, so a name
    # starting with 0 is on the first page however many the other tests made.
    name = f"0-limits-{secrets.token_hex(3)}"
    made = page.request.post(
        "/api/auth/register", data={"username": name, "password": "bright-meadow-4821", "invite_code": code}
    )
    assert made.status == 201, made.text()
    page.reload()
    users = page.get_by_role("region", name="Users and limits")
    users.get_by_role("button", name=f"Limits of {name}").click()
    limits = page.get_by_role("form", name=f"Limits of {name}")
    gpus = limits.get_by_label("GPUs at once")
    expect(gpus).to_have_value("")
    gpus.fill("-1")
    limits.get_by_role("button", name="Save limits").click()
    expect(gpus).to_have_attribute("aria-invalid", "true")
    gpus.fill("3")
    limits.get_by_role("button", name="Save limits").click()
    expect(limits.get_by_role("status")).to_have_text(f"Saved the limits of {name}.")
    expect(gpus).to_have_accessible_description("In force: 3.")
    keep_screenshot(page, tmp_path, "account-admin-limits.png")
    token = page.evaluate(f"localStorage.getItem('{TOKEN_KEY}')")
    user_id = made.json()["id"]
    stored = page.request.get(f"/api/quotas/{user_id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert stored["max_gpus"] == 3 and stored["custom"]["max_gpus"] == 3, stored
    gpus.fill("")
    limits.get_by_role("button", name="Save limits").click()
    expect(gpus).to_have_accessible_description(re.compile(r"^In force: (\d+|no limit)\.$"))
    stored = page.request.get(f"/api/quotas/{user_id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert stored["custom"]["max_gpus"] is None, "an empty field puts the default back"


def test_admin_registers_and_retires_a_modelscope_preset(page: Page, stack, tmp_path):
    log_in_as_admin(page, stack, "/models", "Models")

    name = f"e2e-ms-{secrets.token_hex(3)}"
    page.get_by_role("button", name="Add a preset").click()
    form = page.get_by_role("form", name="Add a preset model")
    form.get_by_label("Name").fill(name)
    form.get_by_role("button", name="Add preset").click()  # no source at all: the server names the field
    expect(form.get_by_label("Hugging Face id")).to_have_attribute("aria-invalid", "true")
    form.get_by_label("ModelScope id").fill("qwen/Qwen2.5-0.5B-Instruct")
    form.get_by_label("Parameters").fill("494000000")
    form.get_by_label("Chat template").fill("qwen")
    keep_screenshot(page, tmp_path, "models-add-preset.png")
    form.get_by_role("button", name="Add preset").click()
    expect(heading(page, name)).to_be_visible()
    about = page.get_by_role("region", name="About")
    expect(about).to_contain_text("qwen/Qwen2.5-0.5B-Instruct")
    expect(about).to_contain_text("494")

    page.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("form", name=f"Edit {name}")
    edit.get_by_label("Remark").fill("registered from the browser test")
    edit.get_by_role("checkbox", name="Retired").check()
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    expect(about).to_contain_text("registered from the browser test")
    expect(about).to_contain_text("Retired")
    keep_screenshot(page, tmp_path, "model-preset-retired.png")
    token = page.evaluate(f"localStorage.getItem('{TOKEN_KEY}')")
    listed = page.request.get("/api/models", params={"q": name}, headers={"Authorization": f"Bearer {token}"}).json()
    [model] = listed["items"]
    assert model["ms_path"] == "qwen/Qwen2.5-0.5B-Instruct" and model["retired_at"] and model["usable_for"] == []

    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    keep_screenshot(page, tmp_path, "account-admin-narrow.png")
