"""What a deployment served since its last report: totals (requests, generated tokens) and the same by user and
adapter with prompt tokens (DeploymentUsage), taken and reset by each report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from services.common.contracts import UsageRow


@dataclass
class Counts:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class UsageBook:
    """Requests counted as they end; `take()` hands over what was counted and starts again."""

    def __init__(self) -> None:
        self.requests = 0
        self.tokens = 0
        self.last_request_at: datetime | None = None
        self._rows: dict[tuple[str, str | None], Counts] = {}

    def count(self, user_id: str, adapter: str | None, prompt_tokens: int, completion_tokens: int) -> None:
        """One request ended (answered or not)."""
        self.requests += 1
        self.tokens += completion_tokens
        self.last_request_at = datetime.now(UTC)
        counts = self._rows.setdefault((user_id, adapter), Counts())
        counts.requests += 1
        counts.prompt_tokens += prompt_tokens
        counts.completion_tokens += completion_tokens

    def take(self) -> tuple[int, int, tuple[UsageRow, ...]]:
        """(requests, tokens, rows) since the last take."""
        rows = tuple(
            UsageRow(user_id=user, adapter=adapter, requests=c.requests, prompt_tokens=c.prompt_tokens,
                     completion_tokens=c.completion_tokens)
            for (user, adapter), c in self._rows.items()
        )  # fmt: skip
        taken = (self.requests, self.tokens, rows)
        self.requests = self.tokens = 0
        self._rows = {}
        return taken
