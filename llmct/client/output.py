"""What the commands print: rich tables for people, JSON for scripts (`--json`), text from the gateway made safe."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# C0 and C1 control characters but tab: a name or message from the gateway never moves the cursor, retitles the
# terminal or hides what follows (escape sequences in another user's text).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")

Column = tuple[str, Callable[[dict], Any]]


def console() -> Console:
    return Console(highlight=False)


def clean(value: Any) -> str:
    """A value as one line of plain text: no control characters, nothing rich reads as markup."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _CONTROL.sub(" ", str(value))


def when(value: str | None) -> str:
    """An ISO time from the API as `YYYY-MM-DD HH:MM:SS` (UTC, as the API gives it)."""
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return clean(value)


def size(n: int | None) -> str:
    if n is None:
        return "-"
    amount = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(n)


def print_json(value: Any) -> None:
    """JSON on stdout, as the API gave it (for `--json`)."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def table(rows: Sequence[dict], columns: Sequence[Column], empty: str) -> None:
    """Rows as a table of the given columns (each a heading and how to read the cell from a row)."""
    out = console()
    if not rows:
        out.print(Text(empty))
        return
    grid = Table(box=None, pad_edge=False, header_style="bold")
    for heading, _ in columns:
        grid.add_column(heading, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(clean(read(row))) for _, read in columns))
    out.print(grid)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """`name: value` lines, aligned (a `show` command)."""
    out = console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in pairs:
        grid.add_row(Text(name), Text(clean(value)))
    out.print(grid)


def say(message: str) -> None:
    """A line for people, on stderr (stdout is for what scripts read), never wrapped."""
    print(clean(message), file=sys.stderr)
