"""Evaluation and export jobs through the whole platform, with the real engine on the tiny model."""

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from llmct.bootstrap import ENGINE_PYTHON

from .helpers import TRAIN, login, registered, unique, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ENDED = {"succeeded", "failed", "cancelled"}
EVAL = {
    "kind": "eval",
    "model": "tiny-llama",
    "datasets": ["tiny_sft"],
    "gpu_count": 0,
    "max_samples": 12,
    "per_device_eval_batch_size": 4,
    "cutoff_len": 128,
}
GENERATE = {**EVAL, "evaluation": "generation", "max_samples": 6, "max_new_tokens": 8}
MERGE_CHECK = Path(__file__).with_name("merge_check.py")


async def submit_and_wait(gw, headers, body: dict, path: str = "/api/jobs") -> dict:
    r = await gw.post(path, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return await wait_for_state(gw, headers, r.json()["id"], ENDED)


async def log_text(gw, headers, job_id: str) -> str:
    r = await gw.get(f"/api/jobs/{job_id}/log", headers=headers)
    assert r.status_code == 200, r.text
    return r.text


@pytest.fixture(scope="module")
async def adapter(stack, tiny_model):
    """A LoRA adapter trained hard enough (high learning rate) to change the model's outputs."""
    import httpx

    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as gw:
        owner = await login(gw, stack.invite_code, unique("evaluator"))
        job = await submit_and_wait(gw, owner, {**TRAIN, "max_steps": 4, "save_steps": 4, "learning_rate": 0.02})
        assert job["state"] == "succeeded", job["message"]
        return {"owner": owner, "job": job, "model": await registered(gw, owner, job["id"])}


async def test_loss_and_generation_evals_store_metrics_and_compare(gw, adapter):
    owner = adapter["owner"]
    loss_job, gen_job = await asyncio.gather(
        submit_and_wait(gw, owner, EVAL),
        submit_and_wait(gw, owner, {**GENERATE, "model": adapter["model"]["name"]}),
    )
    assert loss_job["state"] == "succeeded", loss_job["message"]
    assert gen_job["state"] == "succeeded", gen_job["message"]
    assert "do_eval: true" in loss_job["config_yaml"] and "eval_dataset:" in loss_job["config_yaml"]
    assert gen_job["config"]["adapter_name_or_path"] == adapter["model"]["path"]
    assert gen_job["config"]["model_name_or_path"] != adapter["model"]["path"], "an adapter runs on its base"

    loss = loss_job["metrics"]
    assert (
        loss["eval_loss"] > 0 and abs(loss["perplexity"] - 2.718281828 ** loss["eval_loss"]) < 1e-6 * loss["perplexity"]
    )
    assert loss["samples"] == 12 and loss["samples_per_second"] > 0 and loss["latency_ms"] > 0
    gen = gen_job["metrics"]
    assert {"bleu_4", "rouge_1", "rouge_2", "rouge_l", "samples_per_second", "latency_ms"} <= set(gen)
    assert gen["samples"] == 6 and 0 <= gen["bleu_4"] <= 100

    view = (await gw.get(f"/api/evals/{gen_job['id']}", headers=owner)).json()
    assert view["evaluation"] == "generation" and view["model"] == adapter["model"]["name"]
    assert view["samples_total"] == 6 and len(view["samples"]) == 6
    assert all(s["prompt"] and s["label"] for s in view["samples"])
    page = (
        await gw.get(f"/api/evals/{gen_job['id']}/samples", headers=owner, params={"offset": 4, "limit": 10})
    ).json()
    assert [s["index"] for s in page["items"]] == [4, 5] and page["total"] == 6

    listing = (await gw.get("/api/evals", headers=owner)).json()
    assert {loss_job["id"], gen_job["id"]} <= {e["id"] for e in listing["items"]}
    assert all(e["metrics"] for e in listing["items"] if e["state"] == "succeeded")

    r = await gw.get("/api/evals/compare", headers=owner, params={"ids": f"{loss_job['id']},{gen_job['id']}"})
    assert r.status_code == 200, r.text
    comparison = r.json()
    assert [run["id"] for run in comparison["runs"]] == [loss_job["id"], gen_job["id"]]
    assert {"eval_loss", "perplexity", "bleu_4", "rouge_l"} <= set(comparison["metric_names"])
    assert comparison["samples"] and all(
        s["predictions"][0] is None and s["predictions"][1] is not None for s in comparison["samples"]
    )

    # A training job is no evaluation; someone else's evaluation does not exist.
    r = await gw.get("/api/evals/compare", headers=owner, params={"ids": f"{loss_job['id']},{adapter['job']['id']}"})
    assert r.status_code == 404


async def test_benchmark_eval_scores_accuracy(gw, stack, tiny_model):
    user = await login(gw, stack.invite_code, unique("benchmarker"))
    body = {
        "kind": "eval",
        "model": tiny_model,
        "evaluation": "benchmark",
        "task": "tinymc",
        "n_shot": 1,
        "gpu_count": 0,
    }
    r = await gw.post("/api/evals", json={k: v for k, v in body.items() if k != "kind"}, headers=user)
    assert r.status_code == 201, r.text
    job = await wait_for_state(gw, user, r.json()["id"], ENDED)
    assert job["state"] == "succeeded", job["message"]
    metrics = job["metrics"]
    assert 0 <= metrics["accuracy"] <= 100 and metrics["samples"] == 12
    assert {"accuracy_stem", "accuracy_social_sciences", "accuracy_humanities"} <= set(metrics)

    r = await gw.post(
        "/api/evals", json={**{k: v for k, v in body.items() if k != "kind"}, "task": "mmlu"}, headers=user
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_task", r.text
    assert "tinymc" in r.json()["error"]["message"]


async def test_export_merges_an_adapter_and_registers_it(gw, stack, adapter):
    owner = adapter["owner"]
    job = await submit_and_wait(gw, owner, {"kind": "export", "model": adapter["model"]["name"], "export_size": 1})
    assert job["state"] == "succeeded", job["message"]
    assert "export_quantization" not in job["config_yaml"], "no quantisation keys without GPTQ"
    export_dir = Path(job["config"]["export_dir"])
    assert (export_dir / "Modelfile").is_file() and list(export_dir.glob("*.safetensors"))

    check = subprocess.run(
        [
            str(ENGINE_PYTHON),
            str(MERGE_CHECK),
            job["config"]["model_name_or_path"],
            adapter["model"]["path"],
            str(export_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    diff = json.loads(check.stdout.strip().splitlines()[-1])
    assert diff["merged_vs_adapter"] < 1e-3, diff
    assert diff["merged_vs_base"] > 10 * diff["merged_vs_adapter"], f"the adapter changed nothing: {diff}"

    exported = await registered(gw, owner, job["id"], source="export")
    assert exported["kind"] == "full" and exported["path"] == str(export_dir)
    assert exported["base_model"] == adapter["model"]["name"]
    assert exported["usable_for"] == ["train", "eval", "export", "deploy"]
    lineage = (await gw.get(f"/api/models/{exported['id']}/lineage", headers=owner)).json()
    assert [a["name"] for a in lineage["ancestors"]] == [adapter["model"]["name"], "tiny-llama"]

    # The export is a model like any other: it trains and evaluates, for its owner only.
    again = await submit_and_wait(gw, owner, {**TRAIN, "base_model": exported["name"], "max_steps": 1})
    assert again["state"] == "succeeded", again["message"]
    scored = await submit_and_wait(gw, owner, {**EVAL, "model": exported["name"], "max_samples": 4})
    assert scored["state"] == "succeeded" and scored["metrics"]["eval_loss"] > 0, scored["message"]
    r = await gw.get(f"/api/jobs/{job['id']}/artifacts", headers=owner)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"


async def test_lora_with_gptq_runs_two_stages_and_names_the_missing_package(gw, stack, adapter):
    owner = adapter["owner"]
    body = {
        "kind": "export",
        "model": adapter["model"]["name"],
        "quantization": {
            "method": "gptq",
            "bits": 4,
            "calibration_dataset": "tiny_pt",
            "calibration_samples": 4,
            "calibration_maxlen": 16,
        },
    }
    r = await gw.post("/api/jobs", json=body, headers=owner)
    assert r.status_code == 201, r.text
    submitted = r.json()
    yaml_text = submitted["config_yaml"]
    assert "# stage 1 of 2: merge" in yaml_text and "# stage 2 of 2: quantize" in yaml_text
    assert "export_quantization_bit: 4" in yaml_text and "export_quantization_dataset:" in yaml_text
    job = await wait_for_state(gw, owner, submitted["id"], ENDED)
    assert job["state"] == "failed" and job["reason"] == "missing_dependency", (job["reason"], job["message"])
    assert "optimum" in job["message"] or "gptqmodel" in job["message"], job["message"]
    log = await log_text(gw, owner, job["id"])
    assert "stage 1 of 2: merge" in log and "stage 2 of 2: quantize" in log
    assert log.index("stage 2 of 2") > log.index("Ollama modelfile saved"), "the merge finished before quantising"
    assert (Path(job["config"]["model_name_or_path"]) / "config.json").is_file(), "stage 1 left the merged model"


@pytest.mark.parametrize(
    "body, field, code",
    [
        ({"quantization": {"method": "gptq", "bits": 4}}, "quantization.calibration_dataset", "invalid_field"),
        ({"quantization": {"method": "bitsandbytes", "bits": 4}}, "gpu_count", "invalid_field"),
        ({"quantization": {"method": "bitsandbytes", "bits": 3}, "gpu_count": 1}, "quantization.bits", "invalid_field"),
        (
            {"quantization": {"method": "gptq", "calibration_dataset": "tiny_sft"}},
            "quantization.calibration_dataset",
            "dataset_not_for_calibration",
        ),
        ({"quantization": {"method": "awq"}}, "quantization.method", "invalid_field"),
        ({"export_device": "auto"}, "export_device", "invalid_field"),
        ({"export_size": 0}, "export_size", "invalid_field"),
        ({"config_overrides": {"export_dir": "/etc"}}, "config_overrides.export_dir", "forbidden_override"),
    ],
)
async def test_bad_exports_are_refused(gw, stack, adapter, body, field, code):
    r = await gw.post(
        "/api/jobs", json={"kind": "export", "model": adapter["model"]["name"], **body}, headers=adapter["owner"]
    )
    assert r.status_code == 422, r.text
    assert (r.json()["error"]["field"], r.json()["error"]["code"]) == (field, code), r.text


@pytest.mark.parametrize(
    "body, field, code",
    [
        ({"evaluation": "benchmark"}, "task", "invalid_field"),
        ({"datasets": []}, "datasets", "invalid_field"),
        ({"datasets": ["no-such-data"]}, "datasets[0]", "unknown_dataset"),
        ({"task": "tinymc"}, "task", "invalid_field"),
        ({"evaluation": "vibes"}, "evaluation", "invalid_field"),
        ({"config_overrides": {"task_dir": "x"}}, "config_overrides.task_dir", "forbidden_override"),
    ],
)
async def test_bad_evals_are_refused(gw, stack, tiny_model, body, field, code):
    user = await login(gw, stack.invite_code, unique("eval-bad-input"))
    r = await gw.post("/api/jobs", json={**EVAL, **body}, headers=user)
    assert r.status_code == 422, r.text
    assert (r.json()["error"]["field"], r.json()["error"]["code"]) == (field, code), r.text


async def test_a_full_model_export_without_quantisation_is_refused(gw, stack, tiny_model):
    user = await login(gw, stack.invite_code, unique("export-nothing"))
    r = await gw.post("/api/jobs", json={"kind": "export", "model": tiny_model}, headers=user)
    assert r.status_code == 422 and r.json()["error"]["code"] == "nothing_to_export", r.text


async def test_another_users_model_is_refused_for_every_kind(gw, stack, adapter):
    other = await login(gw, stack.invite_code, unique("eval-outsider"))
    name = adapter["model"]["name"]
    for body, field in [
        ({**TRAIN, "base_model": name}, "base_model"),
        ({**EVAL, "model": name}, "model"),
        ({"kind": "export", "model": name}, "model"),
    ]:
        r = await gw.post("/api/jobs", json=body, headers=other)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "unknown_model" and r.json()["error"]["field"] == field, r.text
    assert (await gw.get(f"/api/evals/{adapter['job']['id']}", headers=other)).status_code == 404
    mine = await gw.get("/api/evals", headers=other)
    assert mine.status_code == 200 and mine.json()["items"] == []


async def test_a_dry_run_previews_the_yaml_and_queues_nothing(gw, stack, tiny_model):
    user = await login(gw, stack.invite_code, unique("dry-runner"))
    r = await gw.post("/api/jobs", params={"dry_run": "true"}, json={**EVAL, "evaluation": "generation"}, headers=user)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["kind"] == "eval" and preview["stages"] == ["generation"]
    assert "predict_with_generate: true" in preview["config_yaml"] and preview["estimate"]["per_gpu_mb"] > 0
    assert (await gw.get("/api/jobs", headers=user)).json()["items"] == [], "nothing was queued"
    r = await gw.post("/api/jobs", params={"dry_run": "true"}, json={**EVAL, "datasets": ["nope"]}, headers=user)
    assert r.status_code == 422 and r.json()["error"]["field"] == "datasets[0]", "a preview validates like a submit"


async def test_jobs_can_be_searched_by_id_or_model(gw, stack, adapter):
    owner = adapter["owner"]
    job_id = adapter["job"]["id"]
    found = (await gw.get("/api/jobs", headers=owner, params={"q": job_id[-6:]})).json()["items"]
    assert job_id in [j["id"] for j in found]
    # Others match through their model: the adapter's name carries the job id's end.
    assert all(j["id"] == job_id or job_id[-6:] in (j["base_model"] or "") for j in found), found
    by_model = (await gw.get("/api/jobs", headers=owner, params={"q": "TINY-LL", "kind": "train"})).json()["items"]
    assert job_id in [j["id"] for j in by_model]
    assert (await gw.get("/api/jobs", headers=owner, params={"q": "%"})).json()["items"] == []
