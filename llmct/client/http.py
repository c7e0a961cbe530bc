"""Calls to the gateway: one httpx client with the API key, errors turned into exit codes, WebSocket URLs with a
one-time ticket (the key never travels in a URL)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from . import config as configuration
from .errors import CliError, Exit, api_error, not_logged_in, unreachable

USER_AGENT = "llmct-cli/0.1"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def headers_for(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def checked(response: httpx.Response) -> httpx.Response:
    """The response when it is a success; a CliError with the gateway's message otherwise (body read first). A
    redirect is not followed (it would carry the API key to wherever it points): it is reported instead."""
    if 300 <= response.status_code < 400:
        where = response.headers.get("location", "?")
        raise CliError(
            f"{response.request.url} redirects (HTTP {response.status_code}) to {where}: not followed, as it would "
            "carry your API key there; log in with the gateway's own URL",
            Exit.UNREACHABLE,
        )
    if response.status_code >= 400:
        response.read()
        raise api_error(response.status_code, response.content)
    return response


def json_of(response: httpx.Response) -> Any:
    """A success's JSON body; exit 3 when it is none (the URL is not a gateway's)."""
    try:
        return response.json()
    except ValueError as exc:
        raise CliError(
            f"{response.request.url} answered something that is not the gateway's JSON", Exit.UNREACHABLE
        ) from exc


def segment(value: str) -> str:
    """An id as one path segment: a `/` or `?` in it cannot reach another route."""
    return quote(value, safe="")


def socket_url(base_url: str, path: str, params: dict[str, str]) -> str:
    scheme = "wss" if base_url.startswith("https:") else "ws"
    return f"{scheme}{base_url.removeprefix('https').removeprefix('http')}{path}?{urlencode(params)}"


class Gateway:
    """The gateway at `url`, called with `api_key` (None: anonymous, for `login` itself)."""

    def __init__(self, url: str, api_key: str | None, timeout: httpx.Timeout = TIMEOUT):
        self.url, self.api_key = url, api_key
        # No redirects: a redirect to another host would carry the key there.
        self.http = httpx.Client(base_url=url, headers=headers_for(api_key), timeout=timeout, follow_redirects=False)

    @classmethod
    def from_config(cls) -> Gateway:
        """The gateway the user logged in to, with their key; exit 3 when there is none."""
        config = configuration.load()
        if not config.url or not config.api_key:
            raise not_logged_in()
        return cls(configuration.normalized_url(config.url), config.api_key)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return checked(self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    def get(self, path: str, **kwargs: Any) -> Any:
        return json_of(self.request("GET", path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> Any:
        answer = self.request("POST", path, **kwargs)
        return json_of(answer) if answer.content else None

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed answer, checked (an error answer raises before the caller reads a byte)."""
        try:
            with self.http.stream(method, path, **kwargs) as response:
                yield checked(response)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    def pages(self, path: str, params: dict[str, Any], limit: int) -> list[dict]:
        """Up to `limit` items of a cursor-paged listing ({items, next_cursor})."""
        items: list[dict] = []
        cursor = None
        while len(items) < limit:
            asked = {**params, "limit": min(200, limit - len(items)), "cursor": cursor}
            page = self.get(path, params={k: v for k, v in asked.items() if v is not None})
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items[:limit]


async def ticket_url(http: httpx.AsyncClient, base_url: str, path: str, params: dict[str, str]) -> str:
    """A WebSocket URL for `path` with a fresh one-time ticket (good for one socket, within 30 s)."""
    try:
        answer = checked(await http.post("/api/ws/tickets"))
    except httpx.TransportError as exc:
        raise unreachable(base_url, exc) from exc
    return socket_url(base_url, path, {**params, "ticket": json_of(answer)["ticket"]})


def async_client(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=gateway.url, headers=headers_for(gateway.api_key), timeout=TIMEOUT, follow_redirects=False
    )


def require(condition: bool, message: str) -> None:
    """A usage error unless `condition`."""
    if not condition:
        raise CliError(message, Exit.USAGE)
