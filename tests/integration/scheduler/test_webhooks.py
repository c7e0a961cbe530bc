"""Signed webhooks (services/scheduler/webhooks/): the scheduler in-process, real NATS and Postgres, a receiver this
test runs on loopback (allowed: LLMCT_WEBHOOK_ALLOW=127.0.0.1). Deliveries are verified with `standardwebhooks`,
written in the transaction of the change they tell of, retried with backoff, refused where the allow list says no,
and never slow the scheduler's handling of job events."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from datetime import UTC, datetime

import httpx
import nats
import pytest
from litestar.testing import AsyncTestClient
from standardwebhooks.webhooks import Webhook

from services.common import contracts
from services.common.contracts import Subjects
from services.common.security import issue_token, new_id
from services.common.settings import from_env
from services.scheduler.jobs import store
from services.scheduler.jobs.transitions import transition
from services.scheduler.settings import FleetSettings
from services.scheduler.webhooks.addresses import Allowed, Refused, checked_address
from services.scheduler.webhooks.delivery import send
from tests.helpers import assert_error, eventually, unique

from .conftest import FLEET_ENV
from .helpers import finished, job_on, move

pytestmark = pytest.mark.integration

AGENT = "webhooks-agent"
TIMEOUT_S = 2.0
WEBHOOKS = {
    "webhook_allow": "127.0.0.1",
    "webhook_retry_s": "0.5,1,1,1",  # quick, and with room for the one failure a test asks for
    "webhook_poll_s": 0.1,
    "webhook_timeout_s": TIMEOUT_S,
    "webhook_concurrency": 4,
}


class Receiver:
    """A tiny HTTP/1.1 server on 127.0.0.1: records each request and answers with the next status it was given
    (then 200); "hang" answers nothing until the client gives up."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.plan: list[int | str] = []
        self.hanging = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hooks"

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")[1:]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((headers, body, time.monotonic()))
            answer = self.plan.pop(0) if self.plan else 200
            if answer == "hang":
                self.hanging += 1
                await asyncio.sleep(3600)
            writer.write(f"HTTP/1.1 {answer} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture(scope="module")
async def hooks(fleet_env, settings, owners, nats_server, pool):
    """The scheduler with quick webhook timings, and the services' connection beating for AGENT."""
    from services.scheduler.app import create_app

    fleet = dataclasses.asdict(from_env(FleetSettings, FLEET_ENV))
    nc = await nats.connect(nats_server.url)

    async def beat_forever():
        while True:  # no GPUs, no CPU slots: nothing is placed on it
            beat = contracts.AgentHeartbeat(agent_id=AGENT, hostname="webhooks", sent_at=datetime.now(UTC))
            await nc.publish(Subjects.agent_heartbeat(AGENT), contracts.encode(beat))
            await asyncio.sleep(0.3)

    beating = asyncio.create_task(beat_forever())
    app = create_app(dataclasses.replace(settings, **fleet, **WEBHOOKS))
    async with AsyncTestClient(app=app) as client:
        yield client, nc.jetstream(), nc
    beating.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await beating
    await nc.close()


@pytest.fixture
async def receiver():
    started = await Receiver().start()
    yield started
    await started.stop()


async def register(client, headers, url: str, events=("job.succeeded",), **extra) -> dict:
    response = await client.post("/api/webhooks", json={"url": url, "events": list(events), **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(pool, endpoint_id: str):
    return await pool.fetch(
        "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at, id", endpoint_id
    )


async def delivered(pool, endpoint_id: str, count: int = 1):
    rows = await deliveries(pool, endpoint_id)
    done = [r for r in rows if r["state"] == "delivered"]
    return rows if len(done) >= count else None


async def test_a_jobs_end_is_delivered_once_signed(hooks, pool, people, receiver, tmp_path):
    client, js, _ = hooks
    owner_id, headers = people["fleet-owner"]
    endpoint = await register(client, headers, receiver.url, events=["job.succeeded", "job.failed"])
    assert endpoint["secret"].startswith("whsec_")
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1)

    for _ in range(2):  # a redelivered JobFinished changes nothing, and owes nothing
        await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(finished(job_id, AGENT, 1)))
    rows = await eventually(lambda: delivered(pool, endpoint["id"]))
    await asyncio.sleep(1)  # room for a second delivery, were one owed

    assert len(await deliveries(pool, endpoint["id"])) == 1 and len(receiver.requests) == 1
    sent_headers, body, _ = receiver.requests[0]
    payload = Webhook(endpoint["secret"]).verify(body, sent_headers)
    assert payload["type"] == "job.succeeded" and payload["data"] == {"id": job_id, "object": "job"}
    assert payload["id"].startswith("evt_") and isinstance(payload["created_at"], int)
    assert sent_headers["webhook-id"] == rows[0]["id"] and rows[0]["attempts"] == 1
    assert sent_headers["host"] == receiver.url.split("/")[2], "the URL's host, though the address was dialled"
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 43).verify(body, sent_headers)  # another secret does not verify

    shown = (await client.get(f"/api/webhooks/{endpoint['id']}", headers=headers)).json()
    assert "secret" not in shown and "secret_salt" not in shown, "the secret is shown once"


async def test_a_deployments_end_is_a_deployment_event(hooks, pool, people, receiver, tmp_path):
    client, js, _ = hooks
    owner_id, headers = people["fleet-owner"]
    endpoint = await register(client, headers, receiver.url, events=["deployment.failed", "job.failed"])
    deployment_id = new_id("dep")
    async with pool.acquire() as conn, conn.transaction():
        await store.insert_job(
            conn,
            job_id=deployment_id,
            owner_id=owner_id,
            kind="deploy",
            priority=0,
            gpu_count=0,
            request={"model": "none"},
            config={},
            config_yaml="",
            stages=[],
            output_dir=str(tmp_path / deployment_id),
            estimate={},
        )
        await move(conn, deployment_id, AGENT, 1, "running")
    failed = finished(deployment_id, AGENT, 1, state="failed")
    await js.publish(Subjects.job_status(AGENT, deployment_id), contracts.encode(failed))
    await eventually(lambda: delivered(pool, endpoint["id"]))
    [(sent_headers, body, _)] = receiver.requests
    payload = Webhook(endpoint["secret"]).verify(body, sent_headers)
    assert payload["type"] == "deployment.failed"
    assert payload["data"] == {"id": deployment_id, "object": "deployment"}


async def test_a_rolled_back_change_owes_no_delivery(hooks, pool, people, receiver, tmp_path):
    client, _, _ = hooks
    owner_id, headers = people["fleet-owner"]
    endpoint = await register(client, headers, receiver.url, events=["job.failed"])
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1)
    with contextlib.suppress(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            assert await transition(conn, job_id, "failed", reason="failed") is not None
            assert len(await deliveries(conn, endpoint["id"])) == 1, "written with the change"
            raise RuntimeError("the change rolls back")
    assert await deliveries(pool, endpoint["id"]) == []
    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)


async def test_a_failing_receiver_is_retried_with_backoff_until_delivered(hooks, pool, people, receiver):
    client, _, _ = hooks
    _, headers = people["fleet-owner"]
    endpoint = await register(client, headers, receiver.url)
    receiver.plan = [500, 503]
    sent = await client.post(f"/api/webhooks/{endpoint['id']}/test", headers=headers)
    assert sent.status_code == 202, sent.text

    await eventually(lambda: delivered(pool, endpoint["id"]))
    assert len(receiver.requests) == 3
    ids = {h["webhook-id"] for h, _, _ in receiver.requests}
    assert ids == {sent.json()["id"]}, "one message: the same webhook-id each attempt"
    times = [at for _, _, at in receiver.requests]
    assert times[1] - times[0] >= 0.4 and times[2] - times[1] >= 0.9, "the delays of LLMCT_WEBHOOK_RETRY_S"
    for sent_headers, body, _ in receiver.requests:
        assert Webhook(endpoint["secret"]).verify(body, sent_headers)["type"] == "webhook.test"

    page = (await client.get(f"/api/webhooks/{endpoint['id']}/deliveries", headers=headers)).json()
    [item] = page["items"]
    assert (item["state"], item["attempts"], item["last_status_code"]) == ("delivered", 3, 200)
    assert item["delivered_at"] and item["last_latency_ms"] is not None and item["next_attempt_at"] is None


async def test_a_receiver_that_never_succeeds_ends_failed(hooks, pool, people, receiver):
    client, _, _ = hooks
    _, headers = people["fleet-owner"]
    endpoint = await register(client, headers, receiver.url)
    receiver.plan = [500] * 10
    await client.post(f"/api/webhooks/{endpoint['id']}/test", headers=headers)

    async def failed():
        rows = await deliveries(pool, endpoint["id"])
        return rows if rows and rows[0]["state"] == "failed" else None

    [row] = await eventually(failed, timeout=15)
    assert row["attempts"] == 5 and len(receiver.requests) == 5, "one attempt more than LLMCT_WEBHOOK_RETRY_S delays"
    assert row["last_status_code"] == 500 and "500" in row["last_error"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[::1]:9/hook",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:80/",
        "http://224.0.0.1/",
        "ftp://127.0.0.1/hook",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/hook",
        "http:///no-host",
    ],
)
async def test_a_refused_url_is_refused_at_registration(hooks, people, url):
    client, _, _ = hooks
    _, headers = people["fleet-owner"]
    response = await client.post("/api/webhooks", json={"url": url, "events": ["job.failed"]}, headers=headers)
    assert_error(response, 422, "invalid_field", "url")


async def test_loopback_is_refused_without_the_allow_list_at_send_too(receiver):
    nobody = Allowed.parse("")
    for url in ("http://localhost/", "http://127.0.0.1/", receiver.url):
        with pytest.raises(Refused):
            await checked_address(url, nobody)
    async with httpx.AsyncClient() as http:
        outcome = await send(http, receiver.url, {}, b"{}", nobody, TIMEOUT_S)
    assert not outcome.delivered and outcome.error and outcome.error.startswith("refused")
    assert receiver.requests == [], "nothing was sent"
    assert (await checked_address("http://localhost/", Allowed.parse("localhost")))[1].is_loopback


async def test_the_worker_refuses_at_send_an_address_refused_since_registration(hooks, pool, people, receiver):
    """A name may resolve elsewhere after registration: the worker checks again, and sends nothing there."""
    client, _, _ = hooks
    _, headers = people["fleet-owner"]
    endpoint = await register(client, headers, receiver.url)
    await pool.execute(
        "UPDATE webhook_endpoints SET url = 'http://169.254.169.254/latest' WHERE id = $1", endpoint["id"]
    )
    await client.post(f"/api/webhooks/{endpoint['id']}/test", headers=headers)

    async def tried():
        rows = await deliveries(pool, endpoint["id"])
        return rows if rows and rows[0]["attempts"] >= 1 and rows[0]["last_error"] else None

    [row] = await eventually(tried)
    assert row["state"] == "pending" and row["last_error"].startswith("refused: 169.254.169.254")
    assert row["last_status_code"] is None and receiver.requests == []


async def test_another_users_endpoint_is_not_found(hooks, pool, people, receiver):
    client, _, _ = hooks
    _, owner = people["fleet-owner"]
    _, other = people["fleet-other"]
    _, admin = people["fleet-admin"]
    endpoint = await register(client, owner, receiver.url)
    sent = (await client.post(f"/api/webhooks/{endpoint['id']}/test", headers=owner)).json()
    base = f"/api/webhooks/{endpoint['id']}"
    for headers in (other, admin):
        assert_error(await client.get(base, headers=headers), 404, "not_found")
        assert_error(await client.patch(base, json={"enabled": False}, headers=headers), 404, "not_found")
        assert_error(await client.post(f"{base}/rotate-secret", headers=headers), 404, "not_found")
        assert_error(await client.get(f"{base}/deliveries", headers=headers), 404, "not_found")
        assert_error(await client.post(f"{base}/test", headers=headers), 404, "not_found")
        assert_error(await client.post(f"{base}/deliveries/{sent['id']}/resend", headers=headers), 404, "not_found")
        assert_error(await client.delete(base, headers=headers), 404, "not_found")
        listed = (await client.get("/api/webhooks", headers=headers)).json()["items"]
        assert endpoint["id"] not in [item["id"] for item in listed]
    assert (await client.get(base, headers=owner)).status_code == 200, "still there"
    assert_error(
        await client.post("/api/webhooks", json={"url": receiver.url, "events": ["agent.offline"]}, headers=owner),
        422,
        "invalid_field",
        "events",
    )
    fleet = {"url": receiver.url, "events": ["agent.offline"], "fleet": True}
    assert_error(await client.post("/api/webhooks", json=fleet, headers=owner), 403, field="fleet")


async def test_resend_rotate_disable_and_delete(hooks, pool, people, receiver):
    client, _, _ = hooks
    _, headers = people["fleet-owner"]
    endpoint = await register(client, headers, receiver.url, description=unique("hook"))
    base = f"/api/webhooks/{endpoint['id']}"
    first = (await client.post(f"{base}/test", headers=headers)).json()
    await eventually(lambda: delivered(pool, endpoint["id"]))

    rotated = (await client.post(f"{base}/rotate-secret", headers=headers)).json()
    assert rotated["secret"] != endpoint["secret"]
    again = await client.post(f"{base}/deliveries/{first['id']}/resend", headers=headers)
    assert again.status_code == 202 and again.json()["id"] != first["id"]
    await eventually(lambda: delivered(pool, endpoint["id"], 2))
    (h1, b1, _), (h2, b2, _) = receiver.requests
    assert Webhook(rotated["secret"]).verify(b2, h2) == Webhook(endpoint["secret"]).verify(b1, h1), "the same event"
    assert h2["webhook-id"] == again.json()["id"]
    assert_error(await client.post(f"{base}/deliveries/msg_nothing/resend", headers=headers), 404, "not_found")

    changed = await client.patch(base, json={"enabled": False}, headers=headers)
    assert changed.status_code == 200 and changed.json()["enabled"] is False
    assert_error(await client.post(f"{base}/test", headers=headers), 409, "webhook_disabled")
    assert_error(await client.patch(base, json={"url": "http://10.0.0.1/"}, headers=headers), 422, field="url")
    assert (await client.delete(base, headers=headers)).status_code == 204
    assert_error(await client.get(base, headers=headers), 404, "not_found")
    assert await deliveries(pool, endpoint["id"]) == []


async def test_an_agent_offline_goes_to_admins_fleet_endpoints(hooks, pool, people, receiver):
    client, _, nc = hooks
    _, admin = people["fleet-admin"]
    endpoint = await register(client, admin, receiver.url, events=["agent.offline"], fleet=True)
    agent_id = unique("webhooks-gone")
    beat = contracts.AgentHeartbeat(agent_id=agent_id, hostname="gone", sent_at=datetime.now(UTC))
    await nc.publish(Subjects.agent_heartbeat(agent_id), contracts.encode(beat))  # once: offline 2 s later

    def about_it():  # agents of other modules may go offline too: this one's delivery
        secret = Webhook(endpoint["secret"])
        return [(h, b) for h, b, _ in receiver.requests if secret.verify(b, h)["data"]["id"] == agent_id]

    async def told():
        return about_it()

    [(headers, body)] = await eventually(told, timeout=20)
    payload = Webhook(endpoint["secret"]).verify(body, headers)
    assert payload["type"] == "agent.offline" and payload["data"] == {"id": agent_id, "object": "agent"}
    await asyncio.sleep(1)
    assert len(about_it()) == 1, "once, however many sweeps follow"


async def _finish_timed(pool, js, owner_id: str, tmp_path) -> float:
    """Seconds from a JobFinished published to the job's state changed."""
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1)
    started = time.monotonic()
    await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(finished(job_id, AGENT, 1)))

    async def ended():
        return await pool.fetchval("SELECT state = 'succeeded' FROM jobs WHERE id = $1", job_id)

    await eventually(ended, interval=0.02)
    return time.monotonic() - started


async def test_a_hanging_receiver_does_not_slow_the_schedulers_event_handling(hooks, pool, people, tmp_path):
    client, js, _ = hooks
    owner_id, headers = people["fleet-other"]
    alone = [await _finish_timed(pool, js, owner_id, tmp_path) for _ in range(3)]

    hanging = await Receiver().start()
    try:
        hanging.plan = ["hang"] * 100
        for _ in range(6):  # more endpoints than the worker's slots: every slot hangs
            await register(client, headers, hanging.url)
        await _finish_timed(pool, js, owner_id, tmp_path)  # six deliveries: every slot of the worker hangs

        async def all_slots_hang():
            return hanging.hanging >= WEBHOOKS["webhook_concurrency"]

        await eventually(all_slots_hang)
        timed = [await _finish_timed(pool, js, owner_id, tmp_path) for _ in range(3)]
        assert hanging.hanging >= 4, "the receiver really was hanging while jobs ended"
    finally:
        await hanging.stop()
    assert max(timed) < max(alone) + 1.0 and max(timed) < TIMEOUT_S, (alone, timed)


async def test_a_user_has_at_most_fifty_endpoints(hooks, settings, pool, receiver):
    from services.auth.store import insert_user

    client, _, _ = hooks
    user_id = new_id("usr")
    await insert_user(pool, user_id=user_id, username=unique("hooks-many"), password_hash="!test", role="user")
    token, _, _ = issue_token(settings.secret_key, user_id=user_id, username="many", role="user", ttl_s=600)
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(50):
        await register(client, headers, receiver.url, enabled=False)
    refused = await client.post("/api/webhooks", json={"url": receiver.url, "events": ["job.failed"]}, headers=headers)
    assert_error(refused, 409, "webhook_limit")
    listed = await client.get("/api/webhooks", params={"limit": 20}, headers=headers)
    page = listed.json()
    assert len(page["items"]) == 20 and page["next_cursor"]
    rest = await client.get("/api/webhooks", params={"cursor": page["next_cursor"], "limit": 200}, headers=headers)
    assert len(rest.json()["items"]) == 30 and rest.json()["next_cursor"] is None
    assert not {i["id"] for i in page["items"]} & {i["id"] for i in rest.json()["items"]}


def checkpoint_saved(job_id: str, agent_id: str, attempt: int, step: int) -> contracts.JobCheckpointSaved:
    return contracts.JobCheckpointSaved(
        job_id=job_id, agent_id=agent_id, step=step, train_loss=0.5, at=datetime.now(UTC), attempt=attempt
    )


async def test_a_saved_checkpoint_from_the_jobs_agent_and_attempt_is_kept_and_delivered(
    hooks, pool, people, receiver, tmp_path
):
    client, js, _ = hooks
    owner_id, headers = people["fleet-owner"]
    endpoint = await register(client, headers, receiver.url, events=["checkpoint.saved"])
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=2)
    other = "webhooks-other-agent"

    await js.publish(Subjects.job_status(other, job_id), contracts.encode(checkpoint_saved(job_id, other, 2, 3)))
    await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(checkpoint_saved(job_id, AGENT, 1, 4)))
    for _ in range(2):  # told again (a restarted agent): kept once, delivered once
        await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(checkpoint_saved(job_id, AGENT, 2, 5)))
    await eventually(lambda: delivered(pool, endpoint["id"]))
    await asyncio.sleep(1)  # room for a second delivery, were one owed

    kept = await pool.fetch("SELECT step, train_loss, attempt FROM job_checkpoints WHERE job_id = $1", job_id)
    assert [tuple(r) for r in kept] == [(5, 0.5, 2)], "another agent's and a stale attempt's are dropped"
    assert len(receiver.requests) == 1
    sent_headers, body, _ = receiver.requests[0]
    payload = Webhook(endpoint["secret"]).verify(body, sent_headers)
    assert payload["type"] == "checkpoint.saved" and payload["data"] == {"id": job_id, "object": "job", "step": 5}

    # A fine-tuning job's delivery names it in OpenAI's terms too.
    ftjob = "ftjob-" + "ab" * 12
    await pool.execute(
        "INSERT INTO fine_tuning_jobs (id, job_id, owner_id, model, training_file, seed, method) "
        "VALUES ($1, $2, $3, 'm', 'file-x', 1, $4)",
        ftjob,
        job_id,
        owner_id,
        {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    )
    await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(checkpoint_saved(job_id, AGENT, 2, 7)))
    await eventually(lambda: delivered(pool, endpoint["id"], 2))
    payload = Webhook(endpoint["secret"]).verify(receiver.requests[1][1], receiver.requests[1][0])
    assert payload["data"] == {
        "id": job_id,
        "object": "job",
        "step": 7,
        "fine_tuning_job_id": ftjob,
        "checkpoint_id": "ftckpt-7-" + "ab" * 12,
    }

    detail = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
    assert [(c["step"], c["train_loss"]) for c in detail["checkpoints"]] == [(7, 0.5), (5, 0.5)]

    gone = contracts.JobCheckpointRemoved(job_id=job_id, agent_id=AGENT, step=5, at=datetime.now(UTC), attempt=2)
    await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(gone))

    async def removed():
        return await pool.fetchval("SELECT array_agg(step) FROM job_checkpoints WHERE job_id = $1", job_id) == [7]

    await eventually(removed)
