"""Experiment tracking end to end (docs/tracking.md): the tiny model trained through the platform reports to a real
MLflow server, to W&B offline and to TensorBoard; the run is read back over MLflow's REST API and the job's page
links to it. The stack forces W&B offline (LLMCT_WANDB_MODE), as an air-gapped site would."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import openai
import pytest

from llmct.embedded import free_port

from .helpers import TRAIN, login, unique, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def output_names(content: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(content)).namelist()


async def test_a_training_job_reports_to_mlflow_wandb_and_tensorboard(gw, stack, tiny_model, mlflow_server):
    headers = await login(gw, stack.invite_code, unique("tracker"))
    experiment = unique("e2e-experiment")
    tracking = {
        "mlflow": {"tracking_uri": mlflow_server.url, "experiment": experiment},
        "wandb": {"project": "llmct-e2e", "entity": "team", "tags": ["e2e", "tiny"], "mode": "online"},
        "tensorboard": True,
    }
    r = await gw.post("/api/jobs", json={**TRAIN, "tracking": tracking}, headers=headers)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["config"]["report_to"] == ["mlflow", "wandb", "tensorboard"]
    assert job["config"]["run_name"] == job["id"]
    assert job["config"]["logging_dir"] == job["config"]["output_dir"] + "/runs"

    done = await wait_for_state(gw, headers, job["id"], {"succeeded", "failed", "cancelled"}, timeout=600)
    assert done["state"] == "succeeded", done["message"]
    steps = [point["step"] for point in done["progress_series"] if point["loss"] is not None]
    assert steps

    # The job's page links to the MLflow run the agent made, which holds the job's loss curve and parameters.
    links = {run["kind"]: run for run in done["tracking"]}
    mlflow = links["mlflow"]
    assert mlflow["run_id"] and mlflow["url"] == (
        f"{mlflow_server.url}/#/experiments/{mlflow['experiment_id']}/runs/{mlflow['run_id']}"
    )
    run = mlflow_server.get("runs/get", run_id=mlflow["run_id"])["run"]
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == job["id"]
    tags = {tag["key"]: tag["value"] for tag in run["data"]["tags"]}
    assert tags["llmct.job_id"] == job["id"]
    params = {param["key"]: param["value"] for param in run["data"]["params"]}
    assert params["learning_rate"] == str(TRAIN.get("learning_rate", 1e-4)) and params["max_steps"] == "12"
    history = mlflow_server.get("metrics/get-history", run_id=mlflow["run_id"], metric_key="loss")["metrics"]
    assert sorted(point["step"] for point in history) == steps

    # W&B was forced offline by the admin: no link; its offline run, with the history, is in the job's outputs.
    wandb = links["wandb"]
    assert wandb["mode"] == "offline" and wandb["url"] is None and wandb["folder"] == "wandb"
    artifacts = await gw.get(f"/api/jobs/{job['id']}/artifacts", headers=headers)
    names = output_names(artifacts.content)
    offline = [n for n in names if "/wandb/offline-run-" in f"/{n}" and n.endswith(f"run-{wandb['run_id']}.wandb")]
    assert offline, [n for n in names if "wandb" in n][:20]
    # TensorBoard's event files are in the outputs too.
    assert links["tensorboard"]["folder"] == "runs"
    assert any("runs/" in n and "events.out.tfevents" in n for n in names), names[:40]


async def test_an_mlflow_server_that_does_not_answer_fails_the_job_before_it_trains(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("tracker"))
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    body = {**TRAIN, "tracking": {"mlflow": {"tracking_uri": uri, "experiment": "gone"}}}
    r = await gw.post("/api/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    done = await wait_for_state(gw, headers, r.json()["id"], {"succeeded", "failed", "cancelled"})
    assert (done["state"], done["reason"]) == ("failed", "tracking_unreachable"), done["message"]
    assert f"the MLflow server {uri} did not answer" in done["message"]
    assert done["progress_series"] == []  # no step ran


async def mlflow_run_of(gw, headers, job_id: str) -> str | None:
    detail = (await gw.get(f"/api/jobs/{job_id}", headers=headers)).json()
    run = next((r for r in detail["tracking"] if r["kind"] == "mlflow"), None)
    return run["run_id"] if run else None


async def test_a_resumed_job_goes_on_in_its_mlflow_run_and_a_retry_starts_a_new_one(
    gw, stack, tiny_model, mlflow_server
):
    headers = await login(gw, stack.invite_code, unique("tracker"))
    tracking = {"mlflow": {"tracking_uri": mlflow_server.url, "experiment": unique("resumes")}}
    body = {**TRAIN, "max_steps": 5000, "save_steps": 3, "tracking": tracking}
    job = (await gw.post("/api/jobs", json=body, headers=headers)).json()

    async def at_step(step: int) -> None:
        for _ in range(240):
            detail = (await gw.get(f"/api/jobs/{job['id']}", headers=headers)).json()
            if (detail["progress"] or {}).get("step", 0) >= step:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the job never reached step {step}: {detail['state']} {detail['message']}")

    await at_step(4)  # checkpoint-3 is written by then
    first = await mlflow_run_of(gw, headers, job["id"])
    assert first is not None
    await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    await wait_for_state(gw, headers, job["id"], {"cancelled"}, timeout=60)
    assert mlflow_server.get("runs/get", run_id=first)["run"]["info"]["status"] == "KILLED"

    assert (await gw.post(f"/api/jobs/{job['id']}/resume", headers=headers)).status_code == 202
    await at_step(8)
    assert await mlflow_run_of(gw, headers, job["id"]) == first
    log = (await gw.get(f"/api/jobs/{job['id']}/log", headers=headers)).text
    assert f"MLflow: run {first}" in log
    steps = {p["step"] for p in mlflow_server.get("metrics/get-history", run_id=first, metric_key="loss")["metrics"]}
    assert {1, 2, 3, 4, 5, 6, 7} <= steps  # both attempts' curve in one run
    await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    await wait_for_state(gw, headers, job["id"], {"cancelled"}, timeout=60)

    assert (await gw.post(f"/api/jobs/{job['id']}/retry", headers=headers)).status_code == 202
    await at_step(2)
    second = await mlflow_run_of(gw, headers, job["id"])
    assert second is not None and second != first
    await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    await wait_for_state(gw, headers, job["id"], {"cancelled"}, timeout=60)


def chat_jsonl(lines: int = 8) -> bytes:
    rows = [
        {"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}."}]}
        for i in range(lines)
    ]
    return ("\n".join(json.dumps(row) for row in rows) + "\n").encode()


async def test_openais_wandb_integration_reports_to_wandb_offline(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("tracker"))
    client = openai.AsyncOpenAI(
        base_url=f"{stack.gateway_url}/v1", api_key=headers["Authorization"].split()[1], max_retries=0
    )
    uploaded = await client.files.create(file=("say.jsonl", chat_jsonl(), "application/jsonl"), purpose="fine-tune")
    created = await client.fine_tuning.jobs.create(
        model=tiny_model,
        training_file=uploaded.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
        integrations=[{"type": "wandb", "wandb": {"project": "openai-e2e", "name": "from-openai", "tags": ["sdk"]}}],
    )
    assert created.integrations and created.integrations[0].wandb.project == "openai-e2e"
    job_id = (await gw.get(f"/v1/fine_tuning/jobs/{created.id}", headers=headers)).json()["llmct"]["job_id"]
    done = await wait_for_state(gw, headers, job_id, {"succeeded", "failed", "cancelled"}, timeout=600)
    assert done["state"] == "succeeded", done["message"]
    assert done["config"]["report_to"] == ["wandb"] and done["config"]["run_name"] == "from-openai"
    wandb = next(r for r in done["tracking"] if r["kind"] == "wandb")
    assert wandb["mode"] == "offline" and wandb["url"] is None  # the stack forces W&B offline
    names = output_names((await gw.get(f"/api/jobs/{job_id}/artifacts", headers=headers)).content)
    assert any(n.endswith(f"run-{wandb['run_id']}.wandb") for n in names), [n for n in names if "wandb" in n][:20]
