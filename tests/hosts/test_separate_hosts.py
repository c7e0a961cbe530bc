"""Agents on hosts of their own (issue 15): each in its own network namespace with its own folder, reaching the
control plane only through NATS, answering no connection from outside. What the platform needs of them travels
over NATS; these tests grow with the `objects` storage mode."""

from __future__ import annotations

import asyncio
import io
import socket
import zipfile
from pathlib import Path

import httpx
import nats
import pytest

from llmct.launcher import TINY_MODEL
from services.common import objects
from services.common.contracts import Buckets
from tests.e2e.helpers import TRAIN, login, registered, wait_for_state
from tests.helpers import eventually, unique

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

ENDED = {"succeeded", "failed", "cancelled"}
EVAL = {"kind": "eval", "datasets": ["tiny_sft"], "gpu_count": 0, "max_samples": 8, "cutoff_len": 128}
DEPLOY = {"gpu_count": 0, "generation": {"max_new_tokens": 8}}
MESSAGES = [{"role": "user", "content": "What is the capital of Canada?"}]


async def finished(gw: httpx.AsyncClient, headers: dict, body: dict) -> dict:
    """Submit a job and wait for its end; it must have succeeded (its log says why not)."""
    r = await gw.post("/api/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    job = await wait_for_state(gw, headers, r.json()["id"], ENDED, timeout=300)
    if job["state"] != "succeeded":
        log = (await gw.get(f"/api/jobs/{job['id']}/log", headers=headers)).text
        raise AssertionError(f"{body['kind']} {job['state']}: {job.get('reason')}: {job.get('message')}\n{log[-3000:]}")
    return job


async def deployment_state(gw: httpx.AsyncClient, headers: dict, deployment: str, states: set[str]) -> dict:
    async def reached():
        found = (await gw.get(f"/api/deployments/{deployment}", headers=headers)).json()
        return found if found["state"] in states else None

    return await eventually(reached, timeout=240, interval=0.5)


def reach(host, address: str, port: int) -> bool:
    """Whether a TCP connection from inside `host` to address:port is answered."""
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2).close()"
    return host.run("python3", "-c", code).returncode == 0


async def admin_headers(gw: httpx.AsyncClient, plane) -> dict[str, str]:
    creds = {"username": plane.env["LLMCT_ADMIN_USERNAME"], "password": plane.env["LLMCT_ADMIN_PASSWORD"]}
    r = await gw.post("/api/auth/login", json=creds)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def online(gw: httpx.AsyncClient, plane, agent_id: str) -> None:
    """Until the fleet lists `agent_id` online (it joined and its heartbeats come in)."""
    headers = await admin_headers(gw, plane)

    async def listed():
        fleet = (await gw.get("/api/agents", headers=headers)).json()
        return any(agent["id"] == agent_id and agent["state"] == "online" for agent in fleet["agents"])

    await eventually(listed, timeout=120, interval=0.5)


async def join_token(gw: httpx.AsyncClient, plane, uses: int = 1) -> str:
    """An admin's join token, as the fleet page makes one."""
    r = await gw.post("/api/agents/join-tokens", json={"max_uses": uses}, headers=await admin_headers(gw, plane))
    assert r.status_code == 201, r.text
    return r.json()["token"]


async def test_hosts_join_with_a_token_and_reach_only_nats_and_the_gateway(network, control_plane, add_host):
    """Two hosts join with one admin's token (`llmct agent join <gateway> <token>` run on each, nothing else given)
    and heartbeat into the fleet; from a host only NATS and the gateway answer, and nothing dials into a host."""
    first, second = add_host(unique("a")[-6:]), add_host(unique("b")[-6:])
    ids = sorted({unique("host-a"), unique("host-b")})
    async with httpx.AsyncClient(base_url=control_plane.gateway_url, timeout=30) as gw:
        headers = await admin_headers(gw, control_plane)
        r = await gw.post("/api/agents/join-tokens", json={"max_uses": 2, "note": "hosts tier"}, headers=headers)
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        for host, agent_id in zip((first, second), ids, strict=True):
            control_plane.join(host, agent_id, token)

        async def both_online():
            fleet = (await gw.get("/api/agents", headers=headers)).json()
            online = {agent["id"]: agent for agent in fleet["agents"] if agent["state"] == "online"}
            return [online[i] for i in ids] if set(ids) <= set(online) else None

        agents = await eventually(both_online, timeout=120)
        listed = (await gw.get("/api/agents/join-tokens", headers=headers)).json()
        uses = next(t for t in listed if t["note"] == "hosts tier")
        assert uses["uses"] == 2, uses
    assert all(agent["last_beat_at"] for agent in agents)

    # What a host reaches of this one: NATS and the gateway on the bridge, and nothing else of the platform.
    assert await asyncio.to_thread(reach, first, network.address, control_plane.nats.port)
    assert await asyncio.to_thread(reach, first, network.address, control_plane.services["gateway"].port)
    for name, service in control_plane.services.items():
        if name != "gateway":
            assert not await asyncio.to_thread(reach, first, network.address, service.port), name
    database_port = int(control_plane.env["DATABASE_URL"].rsplit(":", 1)[1].split("/")[0])
    assert not await asyncio.to_thread(reach, first, network.address, database_port)
    # Nothing dials into a host: a connection from here to a host's address is not answered.
    with pytest.raises(OSError):
        socket.create_connection((second.address, control_plane.nats.port), timeout=2).close()
    control_folder = control_plane.env["HOST_BASE_PATH"]
    for host in (first, second):
        saved = host.root.parent / f"{host.root.name}-state" / "agent" / "joined.json"
        assert saved.is_file() and saved.stat().st_mode & 0o077 == 0, saved
        assert not str(host.root).startswith(control_folder)


async def test_train_download_evaluate_export_and_chat_on_a_host_that_shares_no_folder(control_plane, add_host):
    """Objects mode, the whole path of a model on a host with no folder of the control plane's: the tiny model and
    dataset come to the agent's cache over NATS, the LoRA adapter goes back into the store and down through the
    gateway, and an evaluation, a merge export and a deployment answering `/v1` chat all load it from the store."""
    host = add_host(unique("t")[-6:])
    agent_id = unique("trainer")
    async with httpx.AsyncClient(base_url=control_plane.gateway_url, timeout=60) as gw:
        control_plane.join(host, agent_id, await join_token(gw, control_plane))
        await online(gw, control_plane, agent_id)
        headers = await login(gw, control_plane.env["INVITE_CODE"], unique("lora"))
        job = await finished(gw, headers, TRAIN)
        assert job["agent_id"] == agent_id
        log = (await gw.get(f"/api/jobs/{job['id']}/log", headers=headers)).text
        assert "fetching" in log or "cached" in log, log[-2000:]

        r = await gw.get(f"/api/jobs/{job['id']}/artifacts", headers=headers)
        assert r.status_code == 200, r.text
        names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
        assert any(name.endswith("adapter_model.safetensors") for name in names), names

        adapter = (await registered(gw, headers, job["id"]))["name"]
        evaluation = await finished(gw, headers, {**EVAL, "model": adapter})
        assert evaluation["agent_id"] == agent_id and evaluation["metrics"], evaluation
        export = await finished(gw, headers, {"kind": "export", "model": adapter, "export_size": 1})
        assert (await registered(gw, headers, export["id"], source="export"))["kind"] == "full"

        r = await gw.post("/api/deployments", json={**DEPLOY, "model": adapter}, headers=headers)
        assert r.status_code == 201, r.text
        deployment = r.json()["id"]
        try:
            ready = await deployment_state(gw, headers, deployment, {"ready", "failed"})
            assert ready["state"] == "ready", ready
            r = await gw.post("/v1/chat/completions", json={"model": deployment, "messages": MESSAGES}, headers=headers)
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant", r.text
        finally:
            await gw.post(f"/api/deployments/{deployment}/stop", headers=headers)
            await deployment_state(gw, headers, deployment, {"stopped", "failed"})
    # The model and the dataset came into the agent's own cache (by content), from the control plane's folder.
    control = Path(control_plane.env["HOST_BASE_PATH"])
    for source in (control / "models" / TINY_MODEL / "config.json", next((control / "data").rglob("tiny_sft*"))):
        assert (host.root / "cache" / "sha256" / objects.file_sha256(source)).is_file(), source


async def test_a_job_whose_host_dies_resumes_from_its_stored_checkpoint_on_another(control_plane, add_host):
    """The first host is killed (every process in its namespace) once a checkpoint is in the store; the job goes
    back to the queue and finishes on the second host, resumed from that checkpoint: no step run twice counts twice."""
    first, second = add_host(unique("k")[-6:]), add_host(unique("r")[-6:])
    doomed, heir = unique("doomed"), unique("heir")
    nc = await nats.connect(control_plane.nats.url)
    js = nc.jetstream()
    try:
        async with httpx.AsyncClient(base_url=control_plane.gateway_url, timeout=30) as gw:
            token = await join_token(gw, control_plane, uses=2)
            control_plane.join(first, doomed, token)
            await online(gw, control_plane, doomed)
            headers = await login(gw, control_plane.env["INVITE_CODE"], unique("resumer"))
            # Long enough that the host is killed mid-run: a checkpoint reaches the store a few seconds after it is
            # written (the agent waits for it to be whole), and 200 tiny steps could end before that.
            slow = {**TRAIN, "max_steps": 600, "save_steps": 20}
            r = await gw.post("/api/jobs", json=slow, headers=headers)
            assert r.status_code == 201, r.text
            job_id = r.json()["id"]

            async def checkpoint_stored():
                names = {o.name for o in await objects.list_objects(js, Buckets.CHECKPOINTS, f"{job_id}/")}
                return any(name.endswith("/trainer_state.json") for name in names)

            await eventually(checkpoint_stored, timeout=240, interval=0.5)
            await asyncio.to_thread(first.kill_all)
            control_plane.join(second, heir, token)
            job = await wait_for_state(gw, headers, job_id, {"succeeded", "failed", "cancelled"}, timeout=400)
            log = (await gw.get(f"/api/jobs/{job_id}/log", headers=headers)).text
            history = " | ".join(f"{e.get('state')}: {e.get('message') or ''}" for e in job["history"])
            assert job["state"] == "succeeded", f"{job.get('reason')}: {history}\n{log[-3000:]}"
            assert (job["agent_id"], job["requeues"]) == (heir, 1), history
            assert f"dispatched: on {doomed}" in history.split(" | ")[1], history
            assert "resumes from checkpoint-" in history, history
            steps = [point["step"] for point in job["progress_series"]]
            assert steps == sorted(set(steps)) and steps[-1] == 600, steps
    finally:
        await nc.close()
