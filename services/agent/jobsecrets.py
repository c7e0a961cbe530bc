"""A job's user secrets for a stage that needs them (trackers' credentials: services/common/usersecrets.py).

The dispatch lists only the environment variables (`JobDispatched.secrets`); just before such a stage starts the
agent asks the scheduler for their values (`Subjects.job_secrets`, request/reply to the agent's own inbox: never in
a stream, never saved with the job), gives them to that stage's engine only, and hides them from every log line
it ships (LogShipper.hide). Without them the job fails `secrets_unavailable`, with the scheduler's reason.
"""

from __future__ import annotations

from nats.aio.client import Client

from services.common.contracts import EngineStage, JobDispatched, JobSecrets, JobSecretsAsked, Subjects
from services.common.errors import ApiError
from services.common.requests import ask
from services.common.usersecrets import STAGES_WITH_SECRETS

ASK_TIMEOUT_S = 10.0


class SecretsUnavailable(Exception):
    """The scheduler refused (or did not answer): the message says which secret and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def needs_secrets(order: JobDispatched, stage: EngineStage) -> bool:
    """Whether this stage of the job gets the job's secrets (train stages of a job that lists some)."""
    return bool(order.secrets) and stage.name in STAGES_WITH_SECRETS and stage.serve is None


async def job_secrets(nc: Client, agent_id: str, order: JobDispatched) -> dict[str, str]:
    """The values of the job's secrets, asked of the scheduler for this attempt; `SecretsUnavailable` when none."""
    asked = JobSecretsAsked(job_id=order.job_id, attempt=order.attempt, names=list(order.secrets))
    try:
        answer = await ask(
            nc, Subjects.job_secrets(agent_id), asked, JobSecrets, owner="scheduler", timeout=ASK_TIMEOUT_S
        )
    except ApiError as exc:
        raise SecretsUnavailable(f"the job's secrets: {exc.message}") from exc
    missing = sorted(set(order.secrets) - set(answer.env))
    if missing:
        raise SecretsUnavailable(f"the job's secrets: the scheduler gave no {', '.join(missing)}")
    return {name: answer.env[name] for name in order.secrets}
