"""What a train or export job will leave (`jobs.output`) and read (`jobs.dataset_keys`, `jobs.model_name`), rendered
by the scheduler at submit: the registry registers it as it is."""

import pytest

from services.scheduler.rendering import outputs
from services.scheduler.rendering.outputs import job_inputs

pytestmark = pytest.mark.unit

TRAIN_CONFIG = {
    "stage": "sft",
    "finetuning_type": "lora",
    "output_dir": "/out/job_1",
    "template": "qwen",
    "model_name_or_path": "/models/base",
}


@pytest.mark.parametrize(
    "requested, rendered, kind",
    [
        ("lora", "lora", "lora"),
        ("qlora", "lora", "lora"),
        ("full", "full", "full"),
        ("freeze", "freeze", "full"),
    ],
)
def test_training_registers_an_adapter_or_a_full_model(requested, rendered, kind):
    out = outputs.train_output(
        {"base_model": "base", "datasets": ["d1", "d2"], "finetuning_type": requested},
        {**TRAIN_CONFIG, "finetuning_type": rendered, "dataset": "pub_d1,usr_1_d2"},
    )
    assert out.kind == kind and out.source == "train" and out.path == "/out/job_1"
    assert out.parent_name == "base" and out.parent_location == "/models/base"
    assert out.datasets == ("d1", "d2") and out.template == "qwen" and out.label == "sft"
    assert out.details["finetuning_type"] == requested and out.details["dataset_keys"] == ["pub_d1", "usr_1_d2"]


def test_export_registers_a_merged_or_quantised_model_linked_to_what_it_exported():
    config = {
        "model_name_or_path": "/models/base",
        "adapter_name_or_path": "/out/job_1",
        "output_dir": "/out/job_2",
        "template": "qwen",
    }
    merged = outputs.export_output({"model": "my-adapter"}, config)
    assert (merged.kind, merged.source, merged.path) == ("full", "export", "/out/job_2/export")
    assert merged.parent_name == "my-adapter" and merged.parent_location == "/out/job_1"
    quantised = outputs.export_output(
        {"base_model": "full-model"},
        {**config, "export_quantization_bit": 4, "export_dir": "/out/job_2/q4", "adapter_name_or_path": None},
    )
    assert (quantised.kind, quantised.path, quantised.label) == ("quantized", "/out/job_2/q4", "q4")
    assert quantised.parent_name == "full-model" and quantised.parent_location == "/models/base"
    assert set(outputs.PRODUCERS) == {"train", "export"}


def test_export_outputs_name_their_quantisation():
    gptq = outputs.export_output({"model": "m"}, {"export_dir": "/o/export", "export_quantization_bit": 4})
    assert (gptq.kind, gptq.label, gptq.details) == (
        "quantized",
        "q4",
        {"quantization_bit": 4, "quantization_method": "gptq"},
    )
    bnb = outputs.export_output(
        {"model": "m"}, {"export_dir": "/o/export", "quantization_bit": 8, "quantization_method": "bitsandbytes"}
    )
    assert bnb.kind == "quantized" and bnb.details["quantization_method"] == "bitsandbytes"
    merged = outputs.export_output({"model": "m"}, {"export_dir": "/o/export", "adapter_name_or_path": "/o/a"})
    assert merged.kind == "full" and merged.parent_name == "m" and merged.parent_location == "/o/a"


def test_a_job_records_what_it_reads_and_names():
    train = job_inputs("train", {"base_model": "base", "datasets": ["d"]}, {**TRAIN_CONFIG, "dataset": "a,usr_1__b"})
    assert train.dataset_keys == ["a", "usr_1__b"] and train.model_name == "base" and train.output is not None
    evaluation = job_inputs("eval", {"model": "m"}, {"eval_dataset": "c", "output_dir": "/o"})
    assert (evaluation.dataset_keys, evaluation.model_name, evaluation.output) == (["c"], "m", None)
    deploy = job_inputs("deploy", {"model": "m"}, {"model_name_or_path": "/m"})
    assert (deploy.dataset_keys, deploy.model_name, deploy.output) == ([], "m", None)
