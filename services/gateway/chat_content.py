"""Chat content that would make a model server fetch something: refused unless it is inline data or allow-listed.

A model server given an `image_url` (or `audio_url`, `video_url`, a file part...) fetches it: from the
network where it runs (inside the platform's network: a request forgery), or, for a plain path, from its own
disk (LLaMA-Factory's API opens a local file). Only `data:` URIs pass, and URLs under a prefix of
LLMCT_CHAT_URL_ALLOW. Text parts are never looked at: a link in what someone writes is not fetched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

# A value with a scheme (`https://`, `file:`, `gopher://`...), other than `data:`.
_SCHEMED = re.compile(r"^\s*[a-zA-Z][a-zA-Z0-9+.-]*:")


class FetchRefused(Exception):
    """A chat message names something the model server would fetch, and it is not allowed."""

    def __init__(self, field: str, value: str) -> None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        super().__init__(
            f"{field} would make the model server fetch {shown!r}: send the content inline as a `data:` URI "
            "(base64), or ask an admin to allow its address (LLMCT_CHAT_URL_ALLOW)"
        )
        self.field = field


def allowed_prefixes(setting: str) -> tuple[str, ...]:
    """The allow-list's prefixes; one without a path gets a `/`, so `https://a.example` never matches
    `https://a.example.evil.net`."""
    prefixes = []
    for raw in setting.split(","):
        prefix = raw.strip()
        if prefix:
            prefixes.append(prefix if urlsplit(prefix).path else prefix + "/")
    return tuple(prefixes)


def check_messages(messages: Any, allowed: tuple[str, ...]) -> None:
    """Raise FetchRefused for the first fetchable reference in `messages` that is neither `data:` nor allowed."""
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        parts = [content] if isinstance(content, dict) else content if isinstance(content, list) else []
        for j, part in enumerate(parts):
            if isinstance(part, dict) and part.get("type") != "text":
                for field, value in _references(part, f"messages.{i}.content.{j}"):
                    if not value.startswith("data:") and not value.startswith(allowed):
                        raise FetchRefused(field, value)


def _references(value: Any, field: str, key: str = "") -> Iterator[tuple[str, str]]:
    """Strings in a non-text part a server may fetch: any under a `url`, `*_url`, `path` or `*_path` key, and any
    other with a scheme."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _references(item, f"{field}.{name}", str(name))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _references(item, f"{field}.{n}", key)
    elif isinstance(value, str) and key != "type":
        named = key in ("url", "path") or key.endswith(("_url", "_path"))
        if named or _SCHEMED.match(value):
            yield field, value.strip()
