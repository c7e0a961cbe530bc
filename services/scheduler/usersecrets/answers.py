"""The scheduler's answer to an agent about to start a job's train stage: the values of the job's secrets.

Asked on `llmct.scheduler.job_secrets.<agent_id>` (Subjects.job_secrets), which only that agent's NATS user (and the
services') may publish, so the subject names the asker. Answered only for the job's current agent and attempt,
while it is dispatched or running, and only for the variables its row lists (`jobs.secret_names`), decrypted for
its owner. The answer goes to the agent's own inbox (core NATS request/reply): never into a stream.
"""

from __future__ import annotations

from services.common.contracts import JobSecrets, JobSecretsAsked, Subjects
from services.common.errors import ApiError
from services.common.requests import Endpoint
from services.common.usersecrets import BY_ENV, missing_message

from ..context import SchedulerContext
from . import store
from .sealing import Unreadable, keyring

ACTIVE = ("dispatched", "running")


def refused(message: str, code: str = "secrets_refused") -> ApiError:
    return ApiError(403, code, message)


async def job_secrets(context: SchedulerContext, asked: JobSecretsAsked, agent_id: str) -> JobSecrets:
    """The environment of the job's train stage from its owner's secrets, for `agent_id` running `asked.attempt`."""
    job = await store.job_for_secrets(context.pool, asked.job_id)
    if job is None or job["agent_id"] != agent_id or job["attempt"] != asked.attempt or job["state"] not in ACTIVE:
        raise refused(f"job {asked.job_id} attempt {asked.attempt} is not running on agent {agent_id}")
    unknown = sorted(set(asked.names) - set(BY_ENV))
    if unknown:
        raise ApiError(422, "unknown_secret", f"{', '.join(unknown)}: not a secret a job can be given", "names")
    unlisted = sorted(set(asked.names) - set(job["secret_names"]))
    if unlisted:
        raise refused(f"job {asked.job_id} was not given {', '.join(unlisted)}")
    names = {BY_ENV[env].name: env for env in asked.names}  # listed names are the catalogue's (checked at submit)
    ring = keyring(context.scheduler_settings.secrets_key)
    rows = {row["name"]: row for row in await store.sealed_of(context.pool, job["owner_id"], list(names))}
    missing = [env for name, env in names.items() if name not in rows]
    if missing:
        raise ApiError(404, "secret_missing", "; ".join(missing_message(env) for env in missing))
    env = {}
    for name, row in rows.items():
        try:
            env[names[name]] = ring.open(job["owner_id"], name, row["ciphertext"], row["key_id"])
        except Unreadable as exc:
            label = BY_ENV[names[name]].label
            raise ApiError(409, "secret_unreadable", f"{label}: {exc}: PUT /api/secrets/{name} again") from exc
    return JobSecrets(env=env)


ENDPOINT = Endpoint(
    name="job_secrets",
    subject=Subjects.JOB_SECRETS_ALL,
    request=JobSecretsAsked,
    handler=job_secrets,
    sender=Subjects.job_secrets_sender,
)
