"""The platform's pools give connections back without asyncpg's reset statement (services/common/store.py,
PooledConnection), which is safe only while no code leaves session state on a pooled connection: a session-level
advisory lock, a LISTEN, a SET outside a transaction, a cursor WITH HOLD. These rules keep it so."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.common.store import PooledConnection

pytestmark = pytest.mark.unit

SERVICES = Path(__file__).resolve().parents[2] / "services"
SESSION_STATE = re.compile(
    r"pg_(try_)?advisory_lock(_shared)?\s*\(|[\"';]\s*LISTEN\s+\w|add_listener\(|WITH\s+HOLD|"
    r"[\"']\s*SET\s+(SESSION\s+)?[a-z_]+\s*(=|TO)\b|set_config\(",
    re.IGNORECASE,
)


def test_a_pooled_connection_is_given_back_without_a_reset_round_trip():
    assert PooledConnection.get_reset_query(SimpleNamespace()) == ""  # type: ignore[arg-type]  # no server needed


def test_no_service_leaves_session_state_on_a_pooled_connection():
    found = [
        f"{path.relative_to(SERVICES)}:{number}: {line.strip()}"
        for path in SERVICES.rglob("*.py")
        if "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SESSION_STATE.search(line)
    ]
    assert not found, "session state on a pooled connection (use the _xact_ lock, SET LOCAL): " + "; ".join(found)
