"""Config rendering, override policy, memory estimates and placement, without servers."""

from pathlib import Path

import pytest

from services.common.errors import ApiError
from services.scheduler import rendering
from services.scheduler.jobs import memory, placement
from services.scheduler.jobs.schemas import TrainRequest

pytestmark = pytest.mark.unit

DATA, OUT = Path("/srv/cloud-llm/data"), Path("/srv/cloud-llm/output/job_1")


def render(**fields):
    req = TrainRequest(base_model="m", datasets=["d1", "d2"], **fields)
    return rendering.render_train(
        req, model_path="/models/m", default_template="default", data_dir=DATA, output_dir=OUT
    )


def test_platform_paths_win_and_overrides_merge_last():
    config = render(gpu_count=1, config_overrides={"lr_scheduler_type": "linear", "lora_rank": 32})
    assert config["model_name_or_path"] == "/models/m" and config["output_dir"] == str(OUT)
    assert config["dataset"] == "d1,d2" and config["dataset_dir"] == str(DATA)
    assert config["lr_scheduler_type"] == "linear" and config["lora_rank"] == 32
    assert config["trust_remote_code"] is False and config["bf16"] is True


def test_deep_merge_recurses_and_copies():
    base = {"a": {"b": 1, "c": 2}, "x": [1]}
    merged = rendering.deep_merge(base, {"a": {"c": 3}})
    assert merged == {"a": {"b": 1, "c": 3}, "x": [1]} and base["a"]["c"] == 2


def test_cpu_jobs_never_ask_for_bf16():
    assert render(gpu_count=0)["bf16"] is False


def test_qlora_renders_quantisation():
    config = render(finetuning_type="qlora", quantization_bit=8, quantization_type="fp4")
    assert config["finetuning_type"] == "lora" and config["quantization_bit"] == 8
    assert config["quantization_type"] == "fp4" and config["double_quantization"] is True


def test_eval_steps_set_the_strategy():
    config = render(val_size=0.1, eval_steps=20)
    assert config["eval_strategy"] == "steps" and config["eval_steps"] == 20 and config["val_size"] == 0.1


def test_only_the_warmup_asked_for_is_rendered():
    assert "warmup_ratio" not in render(warmup_steps=3) and render(warmup_steps=3)["warmup_steps"] == 3
    assert "warmup_steps" not in render(warmup_ratio=0.1)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"dataset_dir": "x"}, "config_overrides.dataset_dir"),
        ({"resume_from_checkpoint": "x"}, "config_overrides.resume_from_checkpoint"),
        ({"deepspeed": "z9"}, "config_overrides.deepspeed"),
        ({"report_to": "file:///etc"}, "config_overrides.report_to"),
        ({"lora_target": "~/.ssh"}, "config_overrides.lora_target"),
        ({"optim_target_modules": ["ok", "/abs"]}, "config_overrides.optim_target_modules[1]"),
    ],
)
def test_overrides_refused(overrides, field):
    with pytest.raises(ApiError) as refused:
        render(config_overrides=overrides)
    assert refused.value.status == 422 and refused.value.field == field


def test_memory_table_order_and_advice():
    common = {
        "parameters": 7_000_000_000,
        "quantization_bit": None,
        "batch_size": 2,
        "cutoff_len": 1024,
        "gradient_checkpointing": True,
        "gpu_count": 1,
    }
    full = memory.estimate(finetuning_type="full", **common)
    lora = memory.estimate(finetuning_type="lora", **common)
    q4 = memory.estimate(finetuning_type="qlora", **{**common, "quantization_bit": 4})
    assert full.total_mb > lora.total_mb > q4.total_mb
    assert 110_000 < full.weights_and_optimizer_mb < 130_000  # the published 120 GB for 7B
    assert 5_000 < q4.weights_and_optimizer_mb < 7_000
    assert "qlora" in memory.advice(full) and "qlora" not in memory.advice(q4)
    sharded = memory.estimate(finetuning_type="full", **{**common, "gpu_count": 4})
    assert sharded.per_gpu_mb < full.per_gpu_mb


def _agents():
    return placement.capacities(
        [
            {
                "id": "a",
                "gpus": [{"index": 0, "memory_total_mb": 24_000}, {"index": 1, "memory_total_mb": 24_000}],
                "cpu_slots": 0,
            },
            {"id": "b", "gpus": [], "cpu_slots": 1},
        ],
        [{"agent_id": "a", "gpu_count": 1, "gpu_ids": [0]}],
    )


def test_placement_uses_free_gpus_and_cpu_slots():
    agents = _agents()
    assert placement.place(agents, 1, 10_000) == placement.Placement(agent_id="a", gpu_ids=(1,))
    assert placement.place(agents, 1, 10_000) is None  # both GPUs now busy
    assert placement.place(agents, 0, 0) == placement.Placement(agent_id="b", gpu_ids=())
    assert placement.place(agents, 0, 0) is None


def _cpu_agents(*engines: tuple[str, ...]) -> list[placement.AgentCapacity]:
    """Agents a, b, c, … with two CPU slots each (a the least loaded), serving with `engines`."""
    rows = [{"id": chr(ord("a") + i), "gpus": [], "cpu_slots": 2, "engines": e} for i, e in enumerate(engines)]
    return placement.capacities(rows, [{"agent_id": row["id"], "gpu_count": 0, "gpu_ids": []} for row in rows[1:]])


def test_a_deployment_on_vllm_goes_only_where_vllm_is_and_auto_prefers_it():
    agents = _cpu_agents([], ["llamafactory"], ["vllm", "llamafactory"])
    assert placement.place(agents, 0, 0, "vllm").agent_id == "c"
    assert placement.place(agents, 0, 0, "vllm") is None, "c is full; a and b have no vLLM"
    agents = _cpu_agents([], ["llamafactory"], ["vllm", "llamafactory"])
    assert placement.place(agents, 0, 0, "auto").agent_id == "c", "vLLM first, though a is less loaded"
    assert placement.place(agents, 0, 0, "auto").agent_id == "a", "then any: the least loaded"
    agents = _cpu_agents([], ["vllm"])
    assert placement.place(agents, 0, 0, "llamafactory").agent_id == "a"
    assert placement.place(agents, 0, 0, None).agent_id == "a", "a job that serves nothing goes anywhere"


def test_the_engine_a_job_serves_with_comes_from_its_stored_stages():
    serve = {"startup_timeout_s": 1, "idle_timeout_s": 1}
    assert placement.serve_engine([{"name": "train", "command": ["x"], "config_yaml": ""}]) is None
    assert placement.serve_engine([{"name": "serve", "serve": {**serve, "engine": "vllm"}}]) == "vllm"
    assert placement.serve_engine([{"name": "serve", "serve": serve}]) == "llamafactory", "stored before vLLM"
    assert placement.serve_engine(None) is None


def test_placement_respects_memory_and_count():
    agents = _agents()
    assert placement.place(agents, 1, 30_000) is None
    assert placement.place(agents, 2, 1_000) is None  # one of the two GPUs is taken
    assert placement.could_ever_hold(agents[0], 2, 20_000) and not placement.could_ever_hold(agents[0], 3, 1)


@pytest.mark.parametrize(
    "case", __import__("json").loads((Path(__file__).parents[2] / "bench" / "gpu_check_h100.json").read_text())["cases"]
)
def test_estimate_covers_peaks_measured_on_an_h100(case):
    """The estimate may be generous (jobs wait for a bigger GPU) but never below a measured peak."""
    est = memory.estimate(
        parameters=case["parameters"],
        finetuning_type=case["method"],
        quantization_bit=None,
        batch_size=case["batch"],
        cutoff_len=case["cutoff"],
        gradient_checkpointing=True,
        gpu_count=1,
        hidden=case["hidden"],
        layers=case["layers"],
        vocab=case["vocab"],
    )
    assert case["peak_reserved_mb"] <= est.per_gpu_mb <= 1.35 * case["peak_reserved_mb"]


def test_qlora_reaches_the_engine_under_the_engine_s_own_method_name():
    # The engine keeps a method name it does not know and then quantises nothing: "bitsandbytes" must be "bnb".
    config = render(gpu_count=1, finetuning_type="qlora")
    assert (config["quantization_bit"], config["quantization_method"]) == (4, "bnb")
    assert render(gpu_count=1, finetuning_type="qlora", quantization_method="hqq")["quantization_method"] == "hqq"
