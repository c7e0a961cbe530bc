"""`llmct login` and `llmct logout`."""

from __future__ import annotations

import getpass
import socket
import sys
from datetime import UTC, datetime

import click

from . import config as configuration
from .errors import CliError, Exit
from .http import Gateway, segment
from .output import say


def key_name() -> str:
    """The name the API key gets: where and when it was made, so the web client's key list says what it is."""
    return f"llmct on {socket.gethostname()} {datetime.now(UTC):%Y-%m-%d}"[:64]


def read_secret(prompt: str) -> str:
    """A secret from the terminal (not echoed) or, piped, the first line of stdin."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def key_from_password(gateway: Gateway, username: str, password: str) -> tuple[str, str]:
    """Log in, create a personal API key with the session, end the session; the key and its id."""
    token = gateway.post("/api/auth/login", json={"username": username, "password": password})["access_token"]
    session = {"Authorization": f"Bearer {token}"}
    try:
        created = gateway.post("/api/auth/api-keys", json={"name": key_name()}, headers=session)
    finally:
        try:
            gateway.request("POST", "/api/auth/logout", headers=session)
        except CliError:
            pass  # the session expires by itself; the key is what matters
    return created["key"], created["id"]


@click.command()
@click.option("--url", help="the gateway, e.g. https://llm.example.com (default: LLMCT_URL, or the last login's)")
@click.option("--api-key", help="log in with an API key you made in the web client (`-`: read it from stdin)")
@click.option("--username", "-u", help="log in with a password (prompted, or the first line of stdin when piped)")
def login(url: str | None, api_key: str | None, username: str | None) -> None:
    """Store the gateway's URL and an API key in ~/.config/llmct/config.toml (0600).

    With --username, an API key named after this host is created for you (revoked again by `llmct logout`)."""
    if api_key and username:
        raise CliError("give --api-key or --username, not both", Exit.USAGE)
    stored = configuration.load()
    url = configuration.normalized_url(url or stored.url or click.prompt("gateway URL"))
    if not configuration.is_loopback(url) and url.startswith("http:"):
        say(f"warning: {url} is plain HTTP: your password and API key cross the network unencrypted")
    if not api_key and not username:
        if not sys.stdin.isatty():
            raise CliError("give --api-key or --username (nothing to prompt with: stdin is not a terminal)", Exit.USAGE)
        username = click.prompt("username")
    with Gateway(url, None) as anonymous:
        if username:
            key, key_id = key_from_password(anonymous, username, read_secret(f"password for {username}: "))
        else:
            key, key_id = (read_secret("API key: ") if api_key == "-" else str(api_key)), None
    with Gateway(url, key) as gateway:
        me = gateway.get("/api/auth/me")
    path = configuration.save(configuration.Config(url=url, api_key=key, api_key_id=key_id, username=me["username"]))
    say(f"logged in to {url} as {me['username']} (saved in {path})")


@click.command()
def logout() -> None:
    """Revoke the API key `login` made and forget the stored login."""
    stored = configuration.read_file(configuration.config_path())
    if stored.url and stored.api_key and stored.api_key_id:
        try:
            with Gateway(configuration.normalized_url(stored.url), stored.api_key) as gateway:
                gateway.delete(f"/api/auth/api-keys/{segment(stored.api_key_id)}")
        except CliError as exc:
            say(f"warning: the API key was not revoked ({exc.message}); revoke it in the web client")
    if configuration.forget():
        say("logged out")
    else:
        say("not logged in")
