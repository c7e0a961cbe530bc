"""Rendering of evaluation and export jobs, reading their results, and naming a missing package."""

import json
import math
from pathlib import Path

import msgspec
import pytest
import yaml

from services.agent import failures, results
from services.agent.runtimes.base import ExitInfo
from services.common import contracts
from services.common.errors import ApiError
from services.common.text import storable
from services.scheduler import rendering
from services.scheduler.jobs.schemas import EvalRequest, ExportRequest, JobRequest

pytestmark = pytest.mark.unit

OUT = Path("/srv/cloud-llm/output/job_x")
BASE = rendering.ModelPaths(model_path="/models/base", template="qwen")
ADAPTER = rendering.ModelPaths(model_path="/models/base", adapter_path="/srv/cloud-llm/output/job_a", template="qwen")


def decode(body: dict):
    return msgspec.convert(body, JobRequest)


def render_eval(body: dict, model=BASE, stage="sft", tasks=("tinymc",)) -> rendering.Rendered:
    req = decode({"kind": "eval", "model": "m", **body})
    rendering.check_eval_request(req, list(tasks))
    return rendering.render_eval(
        req, model=model, stage=stage, data_dir=Path("/data"), task_dir=Path("/tasks"), output_dir=OUT
    )


def render_export(body: dict, model=ADAPTER, calibration="/data/corpus.json") -> rendering.Rendered:
    req = decode({"kind": "export", "model": "m", **body})
    return rendering.render_export(req, model=model, output_dir=OUT, calibration_file=calibration)


def test_a_request_is_a_union_tagged_on_kind():
    assert isinstance(decode({"kind": "eval", "model": "m"}), EvalRequest)
    assert isinstance(decode({"kind": "export", "model": "m"}), ExportRequest)
    with pytest.raises(msgspec.ValidationError, match="kind"):
        decode({"model": "m"})
    assert rendering.request_dict(decode({"kind": "eval", "model": "m"}))["kind"] == "eval"


def test_loss_eval_renders_do_eval_on_the_adapter_and_its_base():
    rendered = render_eval({"datasets": ["d1", "d2"], "max_samples": 10}, model=ADAPTER)
    (stage,) = rendered.stages
    c = stage.config
    assert stage.command == rendering.TRAIN_COMMAND and stage.name == "loss"
    assert c["do_eval"] is True and c["do_train"] is False and c["do_predict"] is False
    assert c["eval_dataset"] == "d1,d2" and "dataset" not in c and c["max_samples"] == 10
    assert c["model_name_or_path"] == "/models/base" and c["adapter_name_or_path"] == "/srv/cloud-llm/output/job_a"
    assert c["finetuning_type"] == "lora" and c["template"] == "qwen" and c["output_dir"] == str(OUT)
    assert c["bf16"] is True  # gpu_count defaults to 1
    assert yaml.safe_load(rendered.yaml_text()) == c


def test_generation_eval_passes_the_generation_settings():
    c = render_eval(
        {"evaluation": "generation", "datasets": ["d"], "temperature": 0.2, "max_new_tokens": 9, "gpu_count": 0}
    ).config
    assert c["do_predict"] is True and c["predict_with_generate"] is True and c["do_eval"] is False
    assert (c["temperature"], c["max_new_tokens"], c["bf16"]) == (0.2, 9, False)
    assert "adapter_name_or_path" not in c


def test_benchmark_eval_runs_the_evaluator_on_an_installed_task():
    rendered = render_eval({"evaluation": "benchmark", "task": "tinymc", "split": "validation", "n_shot": 2})
    (stage,) = rendered.stages
    assert stage.command == rendering.BENCHMARK_COMMAND
    c = stage.config
    assert c["task"] == "tinymc_validation" and c["task_dir"] == "/tasks" and c["n_shot"] == 2
    assert c["save_dir"] == str(OUT / "results") and "output_dir" not in c and "eval_dataset" not in c


@pytest.mark.parametrize(
    "body, field, code",
    [
        ({"evaluation": "benchmark"}, "task", "invalid_field"),
        ({"evaluation": "benchmark", "task": "mmlu"}, "task", "unknown_task"),
        ({"evaluation": "benchmark", "task": "tinymc", "datasets": ["d"]}, "datasets", "invalid_field"),
        ({}, "datasets", "invalid_field"),
        ({"datasets": ["d"], "task": "tinymc"}, "task", "invalid_field"),
        ({"datasets": ["d"], "config_overrides": {"save_dir": "x"}}, "config_overrides.save_dir", "forbidden_override"),
        (
            {"datasets": ["d"], "config_overrides": {"do_train": True}},
            "config_overrides.do_train",
            "forbidden_override",
        ),
    ],
)
def test_bad_evals_name_the_field(body, field, code):
    with pytest.raises(ApiError) as error:
        render_eval(body)
    assert (error.value.field, error.value.code) == (field, code)


def test_merging_an_adapter_is_one_stage_without_quantisation_keys():
    (stage,) = render_export({"export_size": 2}).stages
    c = stage.config
    assert stage.name == "merge" and stage.command == rendering.EXPORT_COMMAND
    assert c["adapter_name_or_path"] == ADAPTER.adapter_path and c["export_dir"] == str(OUT / "export")
    assert c["export_size"] == 2 and c["export_device"] == "cpu" and "output_dir" not in c
    assert not [key for key in c if key.startswith(("export_quantization", "quantization"))]


def test_a_quantised_adapter_is_merged_then_quantised_as_two_stages():
    rendered = render_export(
        {"quantization": {"method": "gptq", "bits": 4, "calibration_dataset": "corpus", "calibration_samples": 8}}
    )
    merge, quantize = rendered.stages
    assert (merge.name, quantize.name) == ("merge", "quantize")
    assert merge.config["export_dir"] == str(OUT / "merged") and "export_quantization_bit" not in merge.config
    assert quantize.config["model_name_or_path"] == str(OUT / "merged")
    assert "adapter_name_or_path" not in quantize.config
    assert quantize.config["export_quantization_bit"] == 4 and quantize.config["export_quantization_nsamples"] == 8
    assert quantize.config["export_quantization_dataset"] == "/data/corpus.json"
    assert rendered.config is quantize.config
    documents = list(yaml.safe_load_all(rendered.yaml_text()))
    assert documents == [merge.config, quantize.config]
    assert rendered.yaml_text().startswith("# stage 1 of 2: merge\n")
    assert [row["name"] for row in rendered.stage_rows()] == ["merge", "quantize"]


def test_bitsandbytes_quantises_on_load_on_a_gpu():
    (stage,) = render_export({"quantization": {"method": "bitsandbytes", "bits": 8}, "gpu_count": 1}, model=BASE).stages
    c = stage.config
    assert (c["quantization_bit"], c["quantization_method"], c["export_device"]) == (8, "bnb", "auto")
    assert not [key for key in c if key.startswith("export_quantization")]


@pytest.mark.parametrize(
    "body, model, field",
    [
        ({}, BASE, "quantization"),
        ({"quantization": {"method": "bitsandbytes"}}, ADAPTER, "gpu_count"),
        ({"quantization": {"method": "bitsandbytes", "bits": 2}, "gpu_count": 1}, ADAPTER, "quantization.bits"),
        ({"quantization": {"method": "gptq"}}, ADAPTER, "quantization.calibration_dataset"),
        (
            {"quantization": {"method": "bitsandbytes", "calibration_dataset": "c"}, "gpu_count": 1},
            ADAPTER,
            "quantization.calibration_dataset",
        ),
        ({"export_device": "auto"}, ADAPTER, "export_device"),
        (
            {"config_overrides": {"export_quantization_dataset": "x"}},
            ADAPTER,
            "config_overrides.export_quantization_dataset",
        ),
    ],
)
def test_bad_exports_name_the_field(body, model, field):
    with pytest.raises(ApiError) as error:
        render_export(body, model=model)
    assert error.value.field == field and error.value.status == 422


def test_eval_results_become_agreed_metrics(tmp_path):
    (tmp_path / "eval_results.json").write_text(
        json.dumps({"eval_loss": 2.0, "eval_runtime": 4.0, "eval_samples_per_second": 5.0, "epoch": 0})
    )
    (tmp_path / "predict_results.json").write_text(
        json.dumps(
            {
                "predict_bleu-4": 12.5,
                "predict_rouge-1": 30.0,
                "predict_rouge-2": 10.0,
                "predict_rouge-l": 25.0,
                "predict_runtime": 2.0,
                "predict_samples_per_second": 2.0,
            }
        )
    )
    (tmp_path / "generated_predictions.jsonl").write_text(
        "".join(json.dumps({"prompt": "p", "predict": "x", "label": "y"}) + "\n" for _ in range(4))
    )
    metrics = results.read("eval", tmp_path)
    assert metrics["eval_loss"] == 2.0 and math.isclose(metrics["perplexity"], math.exp(2.0))
    assert (metrics["bleu_4"], metrics["rouge_1"], metrics["rouge_2"], metrics["rouge_l"]) == (12.5, 30.0, 10.0, 25.0)
    assert metrics["samples"] == 4 and metrics["samples_per_second"] == 2.0 and metrics["latency_ms"] == 500.0


def test_benchmark_scores_become_accuracies(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.log").write_text(
        "        Average: 33.33\n           STEM: 25.00\nSocial Sciences: 50.00\n"
    )
    (tmp_path / "results" / "results.json").write_text(json.dumps({"a": {"0": "A", "1": "B"}, "b": {"0": "C"}}))
    assert results.read("eval", tmp_path) == {
        "accuracy": 33.33,
        "accuracy_stem": 25.0,
        "accuracy_social_sciences": 50.0,
        "samples": 3.0,
    }


def test_training_keeps_the_engines_numbers(tmp_path):
    (tmp_path / "all_results.json").write_text(json.dumps({"train_loss": 1.5, "epoch": 1, "note": "x"}))
    assert results.read("train", tmp_path) == {"train_loss": 1.5, "epoch": 1.0}
    assert results.read("eval", tmp_path / "missing") == {}


@pytest.mark.parametrize(
    "line, package",
    [
        (
            "importlib.metadata.PackageNotFoundError: No package metadata was found for The 'optimum>=1.24.0' "
            "distribution was not found and is required by this application.",
            "optimum>=1.24.0",
        ),
        ("ModuleNotFoundError: No module named 'gptqmodel'", "gptqmodel"),
        (
            "ImportError: Using `bitsandbytes` 4-bit quantization requires bitsandbytes: "
            "`pip install -U bitsandbytes>=0.46.1`",
            "bitsandbytes>=0.46.1",
        ),
    ],
)
def test_a_missing_package_is_named(line, package):
    reason, message = failures.classify(ExitInfo(exit_code=1), ["Traceback (most recent call last):", line])
    assert reason == "missing_dependency" and repr(package) in message


def test_a_deployment_serves_an_adapter_on_its_base_with_generation_defaults():
    from services.scheduler.jobs.schemas import DeployRequest

    req = msgspec.convert(
        {"model": "m", "generation": {"temperature": 0.3, "max_new_tokens": 64}, "gpu_count": 0}, DeployRequest
    )
    rendered = rendering.render_deploy(req, model=ADAPTER, startup_timeout_s=180, idle_timeout_s=300)
    (stage,) = rendered.stages
    c = stage.config
    serve = contracts.ServeOptions(startup_timeout_s=180, idle_timeout_s=300, engine="auto")  # the agent chooses
    assert stage.command == rendering.SERVE_COMMAND and stage.serve == serve
    assert c["adapter_name_or_path"] == ADAPTER.adapter_path and c["model_name_or_path"] == "/models/base"
    assert (c["temperature"], c["max_new_tokens"], c["template"]) == (0.3, 64, "qwen")
    assert c["infer_backend"] == "huggingface" and c["trust_remote_code"] is False
    assert rendered.stage_rows()[0]["serve"] == msgspec.to_builtins(serve)
    with pytest.raises(ApiError) as error:
        rendering.render_deploy(
            msgspec.structs.replace(req, config_overrides={"adapter_name_or_path": "x"}),
            model=BASE,
            startup_timeout_s=1,
            idle_timeout_s=1,
        )
    assert error.value.field == "config_overrides.adapter_name_or_path"


@pytest.mark.parametrize(
    "job_state, ready, cancel, expected",
    [
        ("pending", False, False, "queued"),
        ("dispatched", False, False, "starting"),
        ("running", False, False, "starting"),
        ("running", True, False, "ready"),
        ("running", True, True, "stopping"),
        ("succeeded", True, False, "stopped"),
        ("cancelled", True, False, "stopped"),
        ("failed", False, False, "failed"),
    ],
)
def test_deployment_states_people_see(job_state, ready, cancel, expected):
    from datetime import UTC, datetime

    from services.scheduler.deployments.views import public_state, to_out

    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    row = {
        "id": "dep_1",
        "owner": "ann",
        "model": "m",
        "generation": {},
        "idle_timeout_s": 300,
        "ready_at": datetime(2026, 11, 26, 11, 58, tzinfo=UTC) if ready else None,
        "last_request_at": datetime(2026, 11, 26, 11, 59, tzinfo=UTC) if ready else None,
        "requests_served": 3,
        "tokens_generated": 9,
        "created_at": now,
        "job_state": job_state,
        "reason": None,
        "message": "the/server/path",
        "agent_id": "gpu-1",
        "gpu_count": 1,
        "gpu_ids": [0],
        "estimate": {"per_gpu_mb": 1000},
        "cancel_requested": cancel,
        "started_at": None,
        "finished_at": None,
        "priority": 0,
        "engine": "vllm" if ready else None,
        "adapter_slots": 4,
        "max_in_flight": 16,
        "max_queue": 64,
        "engine_load": {"running": 1, "waiting": 2, "kv_cache_pct": 5.0, "adapters": [], "at": now.isoformat()},
    }
    assert public_state(row) == expected
    seen = to_out(row, admin_view=False, now=now)
    assert (seen.load is not None) == (expected == "ready"), "the engine's load only while it is ready"
    assert seen.agent_id == "gpu-1" and seen.owner is None and seen.gpu_memory_mb is None
    if expected == "ready":
        assert seen.idle_seconds_left == 240.0 and seen.uptime_s == 120.0
    if expected not in ("failed", "stopped"):
        assert seen.message is None
    admin = to_out(row, admin_view=True, now=now)
    assert (admin.owner, admin.agent_id, admin.gpu_memory_mb) == ("ann", "gpu-1", 1000)


def test_a_diverged_runs_nan_and_infinite_metrics_are_left_out(tmp_path):
    """NaN has no place in a metric: JSON carries it as null, which the scheduler cannot read (issue 14)."""
    (tmp_path / "all_results.json").write_text(
        json.dumps({"train_loss": float("nan"), "grad_norm": float("inf"), "epoch": 3.0, "train_runtime": 12})
    )
    assert results.read("train", tmp_path) == {"epoch": 3.0, "train_runtime": 12.0}


def test_text_is_stored_without_nul_bytes():
    assert storable("a\x00b\x00\n") == "ab\n" and storable("plain") == "plain"
