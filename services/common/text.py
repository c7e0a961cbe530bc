"""Text as Postgres and JSON can keep it."""

from __future__ import annotations


def storable(text: str) -> str:
    """`text` without NUL characters, which Postgres refuses in text and jsonb (an engine's log line may hold one)."""
    return text.replace("\x00", "")
