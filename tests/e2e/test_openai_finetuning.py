"""Issue 18 through the whole platform with the official `openai` package, unchanged, its `base_url` on the gateway:
upload a chat JSONL, fine-tune the tiny model on it, page the jobs, follow the events until it succeeds, list its
checkpoints, deploy the result and chat with it by its `ft:` name (streamed and not), pause and resume a job, cancel
another, delete the model; and the error cases raise the SDK's matching exceptions (docs/openai.md)."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import openai
import pytest

from .helpers import login, unique

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MESSAGES = [{"role": "user", "content": "What is the capital of Canada?"}]
QUESTIONS = ["Capital of Canada?", "Capital of France?", "Capital of Japan?", "Capital of Peru?"]
ANSWERS = ["Ottawa.", "Paris.", "Tokyo.", "Lima."]


def chat_jsonl(lines: int = 8) -> bytes:
    """OpenAI's chat format: one conversation per line, the assistant's turn weighted as OpenAI allows."""
    rows = []
    for i in range(lines):
        messages = [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": QUESTIONS[i % 4]},
            {"role": "assistant", "content": ANSWERS[i % 4], "weight": 1},
        ]
        rows.append(json.dumps({"messages": messages}))
    return ("\n".join(rows) + "\n").encode()


def tiny_job(epochs: int = 1, batch_size: int = 2) -> dict:
    """A supervised job of a few steps on the CPU: 8 lines, `epochs` passes, `batch_size` a step."""
    return {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs, "batch_size": batch_size}}}


def sdk(stack, headers: dict) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{stack.gateway_url}/v1", api_key=headers["Authorization"].split()[1], max_retries=0
    )


async def until_status(client: openai.AsyncOpenAI, job_id: str, statuses: set[str], timeout: float = 300):
    """The job once its status is one of `statuses`, and every event seen meanwhile (by id), polled as a client
    following a job would."""
    deadline = asyncio.get_running_loop().time() + timeout
    events: dict[str, object] = {}
    while True:
        job = await client.fine_tuning.jobs.retrieve(job_id)
        for event in (await client.fine_tuning.jobs.list_events(job_id, limit=100)).data:
            events[event.id] = event
        if job.status in statuses:
            return job, list(events.values())
        assert asyncio.get_running_loop().time() < deadline, f"job stuck: {job}"
        await asyncio.sleep(0.5)


async def registered_name(client: openai.AsyncOpenAI, job_id: str, timeout: float = 30) -> str:
    """The registry name of the model the job made, once the registry has registered it (it does so when told the
    job succeeded, a moment after)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (name := (await client.fine_tuning.jobs.retrieve(job_id)).model_extra["llmct"]["model_name"]):
        assert asyncio.get_running_loop().time() < deadline, "the job's model was never registered"
        await asyncio.sleep(0.5)
    return name


async def deployment_state(gw, headers, deployment_id: str, states: set[str], timeout: float = 300) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await gw.get(f"/api/deployments/{deployment_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["state"] in states:
            return r.json()
        assert asyncio.get_running_loop().time() < deadline, f"deployment stuck: {r.json()}"
        await asyncio.sleep(0.5)


async def test_fine_tune_deploy_and_chat_by_the_ft_name_with_the_openai_package(gw, stack, tiny_model):
    username = unique("ft-owner")
    owner = await login(gw, stack.invite_code, username)
    client = sdk(stack, owner)

    uploaded = await client.files.create(
        file=("capitals.jsonl", chat_jsonl(), "application/jsonl"), purpose="fine-tune"
    )
    assert uploaded.id.startswith("file-") and uploaded.purpose == "fine-tune" and uploaded.bytes == len(chat_jsonl())
    assert (await client.files.retrieve(uploaded.id)).status == "processed"

    created = await client.fine_tuning.jobs.create(
        model=tiny_model, training_file=uploaded.id, suffix="capitals", seed=7, method=tiny_job(), metadata={"t": "a"}
    )
    assert created.id.startswith("ftjob-") and created.status in ("validating_files", "queued", "running")
    assert created.method.supervised.hyperparameters.n_epochs == 1 and created.seed == 7
    paused = await client.fine_tuning.jobs.create(
        model=tiny_model, training_file=uploaded.id, method=tiny_job(epochs=50, batch_size=1)
    )
    cancelled = await client.fine_tuning.jobs.create(model=tiny_model, training_file=uploaded.id, method=tiny_job())

    # Pages of one, newest first, `after` the last one seen.
    first = await client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in first.data] == [cancelled.id] and first.has_more
    second = await client.fine_tuning.jobs.list(limit=1, after=first.data[0].id)
    assert [j.id for j in second.data] == [paused.id]
    assert [j.id for j in (await client.fine_tuning.jobs.list(metadata={"t": "a"})).data] == [created.id]

    # Cancel one at once; pause another while it runs, and resume it.
    assert (await client.fine_tuning.jobs.cancel(cancelled.id)).id == cancelled.id
    assert (await until_status(client, cancelled.id, {"cancelled"}, timeout=60))[0].status == "cancelled"
    await until_status(client, paused.id, {"running"})
    await client.fine_tuning.jobs.pause(paused.id)
    stopped, told = await until_status(client, paused.id, {"paused"}, timeout=120)
    assert stopped.fine_tuned_model is None
    # It saved a checkpoint at the step it was on (50 epochs: no scheduled save came yet), listed as such.
    said = [e.message for e in told if e.message.startswith("The job was paused: paused at step ")]
    assert said, [e.message for e in told]
    step = int(said[0].split("paused at step ")[1].split(" ")[0])
    listed = (await client.fine_tuning.jobs.checkpoints.list(paused.id)).data
    assert step in [c.step_number for c in listed], (step, listed)
    await client.fine_tuning.jobs.resume(paused.id)
    assert (await client.fine_tuning.jobs.retrieve(paused.id)).status in ("queued", "running")

    # Follow the events until the first job succeeds: messages of its history, metrics of its progress.
    done, events = await until_status(client, created.id, {"succeeded", "failed"})
    assert done.status == "succeeded", (done.error, [e.message for e in events])
    await client.fine_tuning.jobs.cancel(paused.id)  # it has shown what it had to: free the CPU
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all("step" in e.data and "train_loss" in e.data for e in metrics), events
    assert any(e.type == "message" for e in events) and all(e.level in ("info", "warn", "error") for e in events)
    assert done.fine_tuned_model == f"ft:{tiny_model}:{username}:capitals:{created.id.removeprefix('ftjob-')}"
    assert done.finished_at and done.finished_at >= done.created_at and done.error is None
    registered = await registered_name(client, created.id)
    job = (await gw.get(f"/api/jobs/{done.model_extra['llmct']['job_id']}", headers=owner)).json()
    assert job["openai_id"] == created.id and job["state"] == "succeeded"

    # What it trained on: the engine's token count, the same as its progress counted; its metrics as one CSV file of
    # its owner, one row per logged step with the losses its events showed.
    job_id = done.model_extra["llmct"]["job_id"]
    ours = (await gw.get(f"/api/jobs/{job_id}", headers=owner, params={"series_points": 5000})).json()
    counted = [p["tokens_seen"] for p in ours["progress_series"]]
    assert (
        done.trained_tokens
        and done.trained_tokens > 0
        and done.trained_tokens == max(counted) == ours["trained_tokens"]
    )
    assert ours["fine_tuning"]["trained_tokens"] == done.trained_tokens and ours["fine_tuning"]["result_files"]
    assert len(done.result_files) == 1 and ours["fine_tuning"]["result_files"] == done.result_files
    results_file = await client.files.retrieve(done.result_files[0])
    assert results_file.purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO((await client.files.content(results_file.id)).text)))
    logged = {p["step"]: p for p in ours["progress_series"]}
    assert [int(r["step"]) for r in rows] == sorted(logged) and rows
    for row in rows:
        assert float(row["train_loss"]) == pytest.approx(logged[int(row["step"])]["loss"])
        assert row["train_accuracy"] == row["valid_mean_token_accuracy"] == ""
    by_step = {e.data["step"]: e.data["train_loss"] for e in metrics}
    assert all(
        float(r["train_loss"]) == pytest.approx(by_step[int(r["step"])]) for r in rows if int(r["step"]) in by_step
    )
    # The web client's session reads it too (the job page's download), as the SDK does.
    web = await gw.get(f"/v1/files/{results_file.id}/content", headers=owner)
    assert web.status_code == 200 and web.text.startswith("step,train_loss,train_accuracy,valid_loss,")
    assert (await client.fine_tuning.jobs.retrieve(created.id)).result_files == done.result_files  # made once

    checkpoints = (await client.fine_tuning.jobs.checkpoints.list(created.id)).data
    assert checkpoints and all(c.fine_tuning_job_id == created.id for c in checkpoints)
    last = max(checkpoints, key=lambda c: c.step_number)
    assert last.id.startswith("ftckpt-") and last.step_number > 0
    assert last.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-{last.step_number}"

    # A checkpoint is a base too: a new job goes on training its adapter, on the base it was trained on.
    with pytest.raises(openai.BadRequestError) as no_such:
        await client.fine_tuning.jobs.create(
            model=f"{done.fine_tuned_model}:ckpt-step-999999", training_file=uploaded.id, method=tiny_job()
        )
    assert no_such.value.body["param"] == "model"
    again = await client.fine_tuning.jobs.create(
        model=last.fine_tuned_model_checkpoint, training_file=uploaded.id, method=tiny_job()
    )
    assert again.model == tiny_model
    from_checkpoint, told = await until_status(client, again.id, {"succeeded", "failed"})
    assert from_checkpoint.status == "succeeded", (from_checkpoint.error, [e.message for e in told])
    ours = (await gw.get(f"/api/jobs/{again.model_extra['llmct']['job_id']}", headers=owner)).json()
    assert ours["config"]["adapter_name_or_path"].endswith(f"/checkpoint-{last.step_number}")

    # Listed before any deployment serves it (no parent); then deployed by its registry name (engine auto: vLLM where
    # the agent has it, serving the adapter, else LLaMA-Factory's server), which /v1/models names as its parent.
    # A vLLM deployment of its base serving it among its adapters is the same lookup after the name: the gateway's
    # unit and integration tests (tests/unit/test_gateway_finetuned.py, tests/integration/gateway/).
    models = {m.id: m for m in (await client.models.list()).data}
    assert models[done.fine_tuned_model].model_extra["parent"] is None
    assert models[done.fine_tuned_model].owned_by == username
    r = await gw.post(
        "/api/deployments",
        json={"model": registered, "gpu_count": 0, "generation": {"max_new_tokens": 8, "do_sample": False}},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    deployment = r.json()["id"]
    try:
        ready = await deployment_state(gw, owner, deployment, {"ready", "failed"})
        assert ready["state"] == "ready", ready
        models = {m.id: m for m in (await client.models.list()).data}
        entry = models[done.fine_tuned_model].model_extra
        assert (entry["parent"], entry["root"]) == (deployment, tiny_model)

        answer = await client.chat.completions.create(model=done.fine_tuned_model, messages=MESSAGES, max_tokens=6)
        assert answer.choices[0].message.content is not None and answer.usage.completion_tokens > 0
        stream = await client.chat.completions.create(
            model=done.fine_tuned_model, messages=MESSAGES, max_tokens=6, stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        seen = await _requests_served(gw, owner, deployment, 2)
        assert seen["model"] == registered

        # Someone else: not their job, not their file, not their model.
        other = sdk(stack, await login(gw, stack.invite_code, unique("ft-outsider")))
        with pytest.raises(openai.NotFoundError):
            await other.fine_tuning.jobs.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await other.files.retrieve(uploaded.id)
        with pytest.raises(openai.NotFoundError):
            await other.files.content(results_file.id)
        with pytest.raises(openai.NotFoundError):
            await other.files.retrieve(results_file.id)
        with pytest.raises(openai.NotFoundError) as theirs:
            await other.fine_tuning.jobs.create(model=tiny_model, training_file=uploaded.id)
        assert theirs.value.body["param"] == "training_file"
        with pytest.raises(openai.NotFoundError) as not_theirs:
            await other.chat.completions.create(model=done.fine_tuned_model, messages=MESSAGES)
        assert not_theirs.value.body["code"] == "model_not_found"
        with pytest.raises(openai.NotFoundError):
            await other.models.delete(done.fine_tuned_model)
        assert done.fine_tuned_model not in {m.id for m in (await other.models.list()).data}

        # Deployed, it is in use: not deleted. Stopped, it is deleted, and is no model any more: not listed, not
        # served, not deleted twice.
        with pytest.raises(openai.ConflictError) as in_use:
            await client.models.delete(done.fine_tuned_model)
        assert in_use.value.body["param"] == "model"
        await gw.post(f"/api/deployments/{deployment}/stop", headers=owner)
        await deployment_state(gw, owner, deployment, {"stopped", "failed"})
        deleted = await client.models.delete(done.fine_tuned_model)
        assert (deleted.id, deleted.deleted) == (done.fine_tuned_model, True)
        await _gone(client, done.fine_tuned_model)
        assert done.fine_tuned_model not in {m.id for m in (await client.models.list()).data}
        with pytest.raises(openai.NotFoundError):
            await client.models.delete(done.fine_tuned_model)
    finally:
        await gw.post(f"/api/deployments/{deployment}/stop", headers=owner)
    assert (await deployment_state(gw, owner, deployment, {"stopped", "failed"}))["state"] == "stopped"

    # A checkpoint answers by its name once its owner registers it as a model (the job page's "Deploy"), on the base
    # it was trained on: its adapter, deployed like any model.
    with pytest.raises(openai.NotFoundError) as unregistered:
        await client.chat.completions.create(model=last.fine_tuned_model_checkpoint, messages=MESSAGES, max_tokens=2)
    assert "POST /api/models/checkpoints" in unregistered.value.body["message"]
    job_id = created.model_extra["llmct"]["job_id"]
    r = await gw.post("/api/models/checkpoints", json={"job_id": job_id, "step": last.step_number}, headers=owner)
    assert r.status_code == 201, r.text
    kept = r.json()
    assert kept["path"].endswith(f"/checkpoint-{last.step_number}") and kept["kind"] == "lora", kept
    r = await gw.post(
        "/api/deployments",
        json={"model": kept["name"], "gpu_count": 0, "generation": {"max_new_tokens": 8, "do_sample": False}},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    deployment = r.json()["id"]
    try:
        ready = await deployment_state(gw, owner, deployment, {"ready", "failed"})
        assert ready["state"] == "ready", ready
        answer = await client.chat.completions.create(
            model=last.fine_tuned_model_checkpoint, messages=MESSAGES, max_tokens=6
        )
        assert answer.choices[0].message.content is not None and answer.usage.completion_tokens > 0
        with pytest.raises(openai.NotFoundError):
            await other.chat.completions.create(model=last.fine_tuned_model_checkpoint, messages=MESSAGES)
    finally:
        await gw.post(f"/api/deployments/{deployment}/stop", headers=owner)
    assert (await deployment_state(gw, owner, deployment, {"stopped", "failed"}))["state"] == "stopped"


async def test_the_sdks_exceptions_for_a_bad_file_an_unknown_model_and_an_unknown_job(gw, stack, tiny_model):
    client = sdk(stack, await login(gw, stack.invite_code, unique("ft-errors")))
    bad = chat_jsonl(2) + b'{"messages": "not a list"}\n'
    with pytest.raises(openai.BadRequestError) as refused:
        await client.files.create(file=("bad.jsonl", bad, "application/jsonl"), purpose="fine-tune")
    assert "line 3" in refused.value.body["message"], refused.value.body
    assert not [f for f in (await client.files.list()).data if f.filename == "bad.jsonl"]

    good = await client.files.create(file=("ok.jsonl", chat_jsonl(), "application/jsonl"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as unknown:  # the platform's 422, as OpenAI answers it (400)
        await client.fine_tuning.jobs.create(model=unique("no-such-model"), training_file=good.id)
    assert unknown.value.body["param"] == "model", unknown.value.body
    with pytest.raises(openai.NotFoundError):
        await client.fine_tuning.jobs.retrieve("ftjob-" + "0" * 24)
    with pytest.raises(openai.NotFoundError) as no_model:
        await client.chat.completions.create(model=f"ft:{tiny_model}:nobody::{'0' * 24}", messages=MESSAGES)
    assert no_model.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad_suffix:
        await client.fine_tuning.jobs.create(model=tiny_model, training_file=good.id, suffix="Not Allowed!")
    assert bad_suffix.value.body["param"] == "suffix", bad_suffix.value.body


async def _requests_served(gw, headers, deployment: str, count: int, timeout: float = 30) -> dict:
    """The deployment once the agent has reported `count` requests served."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = (await gw.get(f"/api/deployments/{deployment}", headers=headers)).json()
        if (seen.get("requests_served") or 0) >= count:
            return seen
        assert asyncio.get_running_loop().time() < deadline, f"requests not counted: {seen}"
        await asyncio.sleep(0.5)


async def _gone(client: openai.AsyncOpenAI, name: str, timeout: float = 10) -> None:
    """A chat by `name` is refused as an unknown model (the gateway's lookups keep an answer a second: meanwhile
    a deployment just stopped may still be tried, a 503 that says to retry)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await client.chat.completions.create(model=name, messages=MESSAGES, max_tokens=2)
        except openai.NotFoundError:
            return
        except openai.InternalServerError as exc:
            assert exc.status_code == 503, exc
        assert asyncio.get_running_loop().time() < deadline, f"{name} still answers after its deletion"
        await asyncio.sleep(0.5)
