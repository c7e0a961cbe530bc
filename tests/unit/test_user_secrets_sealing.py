"""Encrypting users' secrets (services/scheduler/usersecrets/sealing.py) and the catalogue a job's environment is
taken from (services/common/usersecrets.py); the integration tier shows the same through the API and the agent."""

from __future__ import annotations

import msgspec
import pytest

from services.common.contracts import JobSecrets, JobSecretsAsked, Refused, Subjects
from services.common.errors import ApiError
from services.common.requests import Endpoint, answer
from services.common.usersecrets import BY_ENV, CATALOGUE, env_of, job_secret_names, missing_message
from services.scheduler.usersecrets.sealing import Unreadable, key_id, keyring

pytestmark = pytest.mark.unit

KEY, OTHER = "k" * 32, "o" * 40


def test_a_value_opens_only_as_its_owners_secret_of_its_name():
    ring = keyring(KEY)
    sealed, kid = ring.seal("usr_a", "wandb_api_key", "the-value")
    assert kid == key_id(KEY) and b"the-value" not in sealed
    assert ring.open("usr_a", "wandb_api_key", sealed, kid) == "the-value"
    assert ring.seal("usr_a", "wandb_api_key", "the-value")[0] != sealed, "a fresh nonce each time"
    for user, name in (("usr_b", "wandb_api_key"), ("usr_a", "mlflow_tracking_token")):
        with pytest.raises(Unreadable):
            ring.open(user, name, sealed, kid)
    with pytest.raises(Unreadable):
        ring.open("usr_a", "wandb_api_key", sealed[:-1] + bytes([sealed[-1] ^ 1]), kid)


def test_the_first_key_encrypts_and_every_key_decrypts():
    old = keyring(OTHER)
    sealed, kid = old.seal("usr_a", "wandb_api_key", "v")
    both = keyring(f"{KEY}, {OTHER}")
    assert both.current == key_id(KEY) and both.open("usr_a", "wandb_api_key", sealed, kid) == "v"
    with pytest.raises(Unreadable, match="no longer in LLMCT_SECRETS_KEY"):
        keyring(KEY).open("usr_a", "wandb_api_key", sealed, kid)
    assert KEY not in key_id(KEY) and len(key_id(KEY)) == 16


@pytest.mark.parametrize("setting", ["", " , ", "short", f"{KEY},short"])
def test_no_usable_key_is_a_503_naming_the_setting(setting):
    with pytest.raises(ApiError) as refused:
        keyring(setting)
    assert refused.value.status == 503 and "LLMCT_SECRETS_KEY" in refused.value.message


def test_the_catalogue_holds_trackers_variables_only():
    assert [kind.env for kind in CATALOGUE] == [
        "WANDB_API_KEY",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ]
    assert env_of("LD_PRELOAD") is None and "PYTHONPATH" not in BY_ENV
    assert missing_message("WANDB_API_KEY") == "W&B API key not set: PUT /api/secrets/wandb_api_key"
    assert job_secret_names(["MLFLOW_TRACKING_TOKEN", "WANDB_API_KEY", "WANDB_API_KEY"]) == (
        "WANDB_API_KEY",
        "MLFLOW_TRACKING_TOKEN",
    )
    with pytest.raises(ValueError, match="LD_PRELOAD"):
        job_secret_names(["WANDB_API_KEY", "LD_PRELOAD"])


async def test_an_endpoint_with_a_sender_reads_the_asker_from_the_subject_only():
    heard = []

    async def handler(context, asked: JobSecretsAsked, agent_id: str) -> JobSecrets:
        heard.append(agent_id)
        return JobSecrets(env={})

    endpoint = Endpoint(
        name="job_secrets",
        subject=Subjects.JOB_SECRETS_ALL,
        request=JobSecretsAsked,
        handler=handler,
        sender=Subjects.job_secrets_sender,
    )
    data = msgspec.json.encode(JobSecretsAsked(job_id="job_1", attempt=1, names=[]))
    assert isinstance(msgspec.json.decode(await answer(None, endpoint, data, Subjects.job_secrets("a1"))), dict)
    assert heard == ["a1"]
    for subject in ("llmct.scheduler.job_secrets.", "llmct.scheduler.job_secrets.a.b", "other.a1"):
        refused = msgspec.json.decode(await answer(None, endpoint, data, subject), type=Refused)
        assert refused.status == 400
    assert heard == ["a1"]
