"""Who may do what on NATS: one user for the services, one per agent, limited to that agent's own subjects.

The permissions are rendered as a nats-server `authorization` block (config-file users). The embedded server
(`embedded.NatsServer`, used by `llmct up` and the tests) writes it; `deploy/nats/` shows the same for
production, and `llmct nats users --agent <id>` prints one agent's entry to add there. Agents that joined with a
token (docs/fleet.md, "Joining") are kept by the scheduler in `agent_credentials`, their passwords as bcrypt
hashes, which nats-server accepts in place of the password; `llmct up` and `llmct nats sync-users` render them in.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
from pathlib import Path

import bcrypt

from .contracts import Buckets, Subjects
from .private import private_folder, write_private

SERVICE_USER = "llmct-services"
AGENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DISPATCH_STREAM = "DISPATCH"
# How many reply messages an agent may send to one request (chat streams many chunks), and for how long.
RESPONSE_MAX_MSGS = 1_000_000
RESPONSE_EXPIRES = "15m"
# nats-server checks a bcrypt password on every connect (not per message): 2^11 rounds is its own tool's default.
BCRYPT_ROUNDS = 11
# `objects` storage mode (services/common/storage.py): the buckets an agent reads its jobs' inputs from, and those
# it writes their outputs and checkpoints to. NATS cannot tell one job's objects from another's by subject (an
# object's subject carries its name encoded), so an agent may read every object of these buckets and replace any
# of the two it writes (docs/security.md).
AGENT_READS = Buckets.ALL
AGENT_WRITES = (Buckets.OUTPUTS, Buckets.CHECKPOINTS)


def bucket_permissions(bucket: str, writes: bool) -> list[str]:
    """What the object store client (services/common/objects.py, nats-py's put) publishes to use one bucket."""
    stream, api = f"OBJ_{bucket}", "$JS.API"
    allowed = [
        f"{api}.STREAM.INFO.{stream}",
        f"{api}.STREAM.MSG.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}.>",
        f"{api}.CONSUMER.CREATE.{stream}",
        f"{api}.CONSUMER.CREATE.{stream}.>",
        f"{api}.CONSUMER.MSG.NEXT.{stream}.>",
        f"{api}.CONSUMER.INFO.{stream}.>",
        f"{api}.CONSUMER.DELETE.{stream}.>",
    ]
    if writes:  # a put replaces an object of the same name: its old chunks are purged
        allowed += [f"$O.{bucket}.>", f"{api}.STREAM.PURGE.{stream}"]
    return allowed


class BadAgentId(RuntimeError):
    """An agent id that cannot be one NATS subject token or a consumer name."""


def check_agent_id(agent_id: str) -> str:
    """The id itself when it is usable in subjects and consumer names (letters, digits, '-', '_')."""
    if not AGENT_ID.match(agent_id):
        raise BadAgentId(f"agent id {agent_id!r} must be 1-64 letters, digits, '-' or '_' (it is a NATS subject token)")
    return agent_id


def default_agent_id() -> str:
    """The host name, with what a subject token cannot hold replaced by '-'."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64] or "agent"


def agent_user(agent_id: str) -> str:
    """The NATS user name of an agent."""
    return f"agent-{agent_id}"


def agent_consumer(agent_id: str) -> str:
    """The agent's durable pull consumer on DISPATCH (the Runner's `consumer_name` for a valid id)."""
    return f"agent-{agent_id}"


def agent_inbox_prefix(agent_id: str) -> str:
    """The agent's own reply inboxes: it may not read anybody else's."""
    return f"_INBOX.{agent_user(agent_id)}"


def agent_permissions(agent_id: str) -> dict:
    """Publish only its own heartbeats, job events, log batches, requests for its jobs' secrets and its own DISPATCH
    consumer's API; read cancels, its deployments' requests, its own inboxes and service discovery; answer requests
    it received. Never `logs.>`: only the scheduler's relay writes a job's log, after checking that the job is the
    shipping agent's."""
    check_agent_id(agent_id)
    consumer = agent_consumer(agent_id)
    api = f"$JS.API.CONSUMER.%s.{DISPATCH_STREAM}.{consumer}"
    return {
        "publish": {
            "allow": [
                Subjects.agent_heartbeat(agent_id),
                Subjects.agent_job_status_all(agent_id),  # the subject names the sender of a job event
                Subjects.agent_job_logs_all(agent_id),  # log batches too, for the scheduler's relay to check
                # Asks for the secrets of a job it runs: the subject names the asker; the answer comes to its inbox.
                Subjects.job_secrets(agent_id),
                # The filtered create form: the server checks the filter in the body equals this subject.
                (api % "CREATE") + "." + Subjects.job_dispatch(agent_id),
                api % "INFO",
                api % "MSG.NEXT",
                f"$JS.ACK.{DISPATCH_STREAM}.{consumer}.>",
                *(item for bucket in AGENT_READS for item in bucket_permissions(bucket, bucket in AGENT_WRITES)),
            ]
        },
        "subscribe": {
            "allow": [
                Subjects.JOB_CANCEL_ALL,
                Subjects.agent_deploy_all(agent_id),
                agent_inbox_prefix(agent_id) + ".>",
                "$SRV.>",  # `nats micro` discovery
                "llmct.agent.>",
            ]
        },
        "allow_responses": {"max": RESPONSE_MAX_MSGS, "expires": RESPONSE_EXPIRES},
    }


def agent_entry(agent_id: str, password: str) -> dict:
    """One agent's entry in the `users` list of an authorization block."""
    return {"user": agent_user(agent_id), "password": password, "permissions": agent_permissions(agent_id)}


def new_agent_password() -> tuple[str, str]:
    """A fresh password for a joining agent: (the password, given once; its bcrypt hash, the only thing kept)."""
    password = secrets.token_urlsafe(24)
    return password, bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def is_bcrypt(password: str) -> bool:
    """Whether a config password is a bcrypt hash (nats-server compares those with bcrypt)."""
    return password.startswith(("$2a$", "$2b$", "$2y$"))


def authorization(service_password: str, agents: dict[str, str], joined: dict[str, str] | None = None) -> dict:
    """The authorization block: the services' user (every subject) and one restricted user per agent, `agents`
    (id -> password) set by hand, `joined` (id -> bcrypt hash) from join tokens. An id in both keeps the one set by
    hand: nats-server refuses a config naming a user twice."""
    users = [{"user": SERVICE_USER, "password": service_password}]
    every = {**(joined or {}), **agents}
    users += [agent_entry(agent_id, password) for agent_id, password in sorted(every.items())]
    return {"authorization": {"users": users}}


def render(service_password: str, agents: dict[str, str], joined: dict[str, str] | None = None) -> bytes:
    """A nats-server config file's text (JSON is valid nats-server syntax; quoted `$JS` is not a variable)."""
    return (json.dumps(authorization(service_password, agents, joined), indent=2) + "\n").encode()


def write_config(
    path: Path, service_password: str, agents: dict[str, str], joined: dict[str, str] | None = None
) -> Path:
    """Write a nats-server config file, readable by this user only."""
    private_folder(path.parent)
    write_private(path, render(service_password, agents, joined))
    return path
