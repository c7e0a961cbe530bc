"""The local stack keeps its secrets (issue 14, item 9): Postgres asks for a generated password (scram-sha-256, no
`trust` anywhere), secrets and state live in a folder only the platform's user reads, outside the storage jobs see,
and the banner says where the admin password is, never what it is."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import asyncpg
import pytest

from llmct.embedded import PostgresServer, free_port
from llmct.launcher import LocalStack, banner, secrets_folder
from services.common.settings import StoragePaths

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def open_folder():
    """Postgres runs as its own user, which cannot enter pytest's private tmp folders."""
    folder = Path(tempfile.mkdtemp(prefix="llmct-secrets-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def storage_in(folder: Path) -> StoragePaths:
    base = folder / "cloud-llm"
    return StoragePaths(base=base, logs=base / "logs", hf_cache=base / "hf-cache")


def stack_env() -> dict[str, str]:
    return {
        "LLMCT_NATS_PORT": str(free_port()),
        "LLMCT_PG_PORT": str(free_port()),
        "LLMCT_AGENT_ID": "secrets-agent",
        "PATH": os.environ.get("PATH", ""),
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def refused(url: str) -> None:
    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        await asyncpg.connect(url)


def assert_password_only(server: PostgresServer) -> None:
    hba = [line for line in server.hba_path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert hba and not any(re.search(r"\btrust\b", line) for line in hba), hba
    assert all(line.split()[-1] == "scram-sha-256" for line in hba), hba
    asyncio.run(refused(server.url_of("postgres", password=False)))  # over TCP, without the password
    asyncio.run(refused(server.url.replace(server.password, "not-the-password")))
    socket = f"postgresql://postgres@/postgres?host={server.data_dir}&port={server.port}"
    asyncio.run(refused(socket))  # the Unix socket asks for it too


def test_secrets_are_private_and_postgres_asks_for_its_password(open_folder):
    storage = storage_in(open_folder)
    storage.ensure()
    stack = LocalStack(storage=storage, env=stack_env())
    stack.prepare_env()
    try:
        stack.start_servers()
        assert stack.postgres is not None
        assert_password_only(stack.postgres)
        assert stack.postgres.password in stack.env["DATABASE_URL"]

        state = storage.state
        assert not state.is_relative_to(storage.base), "jobs see HOST_BASE_PATH: state is kept out of it"
        assert mode(state) & 0o067 == 0, oct(mode(state))  # as root, the postgres group may pass through, no more
        kept = secrets_folder(storage)
        assert mode(kept) == 0o700
        names = {path.name for path in kept.iterdir()}
        assert names >= {"secret_key", "invite_code", "admin_password", "postgres_password", "nats_service_password"}
        assert all(mode(path) == 0o600 for path in kept.iterdir())
        assert mode(state / "nats") == 0o700 and mode(state / "nats" / "auth.conf") == 0o600
        platform_logs = storage.logs / "platform"
        assert mode(platform_logs) == 0o700 and mode(platform_logs / "nats.log") == 0o600

        text = banner(stack)
        assert stack.env["LLMCT_ADMIN_PASSWORD"] not in text and stack.env["INVITE_CODE"] not in text
        assert str(kept / "admin_password") in text
    finally:
        stack.stop()


def test_a_stack_made_before_passwords_is_moved_out_and_closed(open_folder):
    """An older `make up` kept its state in cloud-llm/state, secrets loose, and a Postgres that trusted anyone."""
    storage = storage_in(open_folder)
    storage.ensure()
    old = storage.base / "state"
    old.mkdir()
    (old / "invite_code").write_text("old-invite\n")
    os.chmod(old, 0o755)
    legacy = PostgresServer(data_dir=old / "postgres", port=free_port())
    legacy.data_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(legacy.data_dir, "postgres", "postgres")
    legacy._run("initdb", "-D", str(legacy.data_dir), "--auth=trust", "-U", "postgres", "--no-locale")

    stack = LocalStack(storage=storage, env=stack_env())
    stack.prepare_env()
    try:
        stack.start_servers()
        assert not old.exists() and (storage.state / "postgres" / "PG_VERSION").exists()
        assert stack.env["INVITE_CODE"] == "old-invite", "kept secrets survive the move"
        assert stack.postgres is not None
        assert_password_only(stack.postgres)
    finally:
        stack.stop()
