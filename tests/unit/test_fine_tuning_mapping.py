"""OpenAI's fine-tuning job onto our training job (services/scheduler/openai): the request POST /api/jobs gets, the
autos, OpenAI's validation rules, status, names and ids, errors in OpenAI's shape, and the rendered eval dataset."""

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from litestar import Request

from services.common import openai_errors as errors
from services.common.errors import ApiError
from services.common.security import Principal
from services.scheduler.jobs.schemas import TrainRequest
from services.scheduler.openai import history, mapping, results, service
from services.scheduler.openai.schemas import FineTuningJobCreate
from services.scheduler.rendering import render_train

pytestmark = pytest.mark.unit


def create(**fields) -> FineTuningJobCreate:
    body = {"model": "tiny", "training_file": "file-" + "a" * 24, **fields}
    return msgspec.convert(body, FineTuningJobCreate)


def test_autos_resolve_to_our_documented_choices_and_map_onto_a_lora_sft_job():
    req = create()
    method = mapping.resolved_method(req)
    assert method == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0}},
    }
    train = mapping.train_request(req, method, seed=7, gpu_count=0)
    assert (train.stage, train.finetuning_type, train.base_model, train.datasets) == (
        "sft",
        "lora",
        "tiny",
        [req.training_file],
    )
    assert train.num_train_epochs == 3 and train.learning_rate == pytest.approx(1e-4)
    assert train.per_device_train_batch_size * train.gradient_accumulation_steps == 4
    assert train.config_overrides == {"seed": 7, "save_strategy": "epoch"} and train.gpu_count == 0
    assert train.eval_datasets == []


def test_dpo_takes_beta_and_numbers_override_autos():
    req = create(
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3, "n_epochs": 2, "batch_size": 24}}},
        validation_file="file-" + "b" * 24,
    )
    method = mapping.resolved_method(req)
    assert mapping.hyperparameters_of(method) == {
        "n_epochs": 2,
        "batch_size": 24,
        "learning_rate_multiplier": 1.0,
        "beta": 0.3,
    }
    train = mapping.train_request(req, method, seed=1, gpu_count=1)
    assert train.stage == "dpo" and train.config_overrides["pref_beta"] == 0.3
    assert (train.per_device_train_batch_size, train.gradient_accumulation_steps) == (8, 3)
    assert train.eval_datasets == ["file-" + "b" * 24]


def test_the_deprecated_top_level_hyperparameters_count_only_without_a_method():
    old = create(hyperparameters={"n_epochs": 5, "learning_rate_multiplier": 2})
    assert mapping.hyperparameters_of(mapping.resolved_method(old))["n_epochs"] == 5
    both = create(hyperparameters={"n_epochs": 5}, method={"type": "supervised"})
    assert mapping.hyperparameters_of(mapping.resolved_method(both))["n_epochs"] == 3


@pytest.mark.parametrize(
    "fields",
    [
        {"suffix": "x" * 65},
        {"suffix": "Has Caps"},
        {"metadata": {f"k{i}": "v" for i in range(17)}},
        {"metadata": {"k" * 65: "v"}},
        {"metadata": {"k": "v" * 513}},
        {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 51}}}},
        {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}},
        {"method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 257}}}},
        {"method": {"type": "supervised", "supervised": {"hyperparameters": {"learning_rate_multiplier": 0}}}},
        {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": "many"}}}},
        {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}},
        {"method": {"type": "reinforcement"}},
    ],
)
def test_openais_rules_refuse(fields):
    with pytest.raises(msgspec.ValidationError):
        create(**fields)


def test_openais_limits_themselves_pass():
    create(suffix="a-b_0" + "x" * 59, metadata={f"k{i}": "v" * 512 for i in range(16)})


@pytest.mark.parametrize("batch", [1, 4, 7, 24, 64, 251, 256])
def test_a_batch_is_split_exactly_into_what_our_form_allows(batch):
    per_device, accumulation = mapping.split_batch(batch)
    assert per_device * accumulation == batch and per_device <= 8
    TrainRequest(
        base_model="m", datasets=["d"], per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation
    )


@pytest.mark.parametrize(
    ("state", "paused", "status"),
    [
        ("pending", False, "queued"),
        ("dispatched", True, "queued"),
        ("running", True, "running"),
        ("succeeded", True, "succeeded"),
        ("failed", False, "failed"),
        ("cancelled", False, "cancelled"),
        ("cancelled", True, "paused"),
    ],
)
def test_status_mapping(state, paused, status):
    assert mapping.status_of(state, paused) == status


def test_ids_and_names():
    ftjob = mapping.new_job_id()
    assert ftjob.startswith("ftjob-") and len(ftjob) == 30 and int(ftjob[6:], 16) >= 0
    assert mapping.new_job_id() != ftjob
    hexpart = ftjob.removeprefix("ftjob-")
    name = mapping.fine_tuned_model("tiny", "ann", None, ftjob)
    assert name == f"ft:tiny:ann::{hexpart}"
    assert mapping.fine_tuned_model("tiny", "ann", "mine", ftjob) == f"ft:tiny:ann:mine:{hexpart}"
    assert mapping.checkpoint_id(ftjob, 40) == f"ftckpt-40-{hexpart}"
    assert mapping.checkpoint_model(name, 40) == f"{name}:ckpt-step-40"


def test_refusals_of_the_built_request_name_openais_fields():
    data = create(validation_file="file-" + "b" * 24)
    unknown = ApiError(422, "unknown_dataset", "dataset 'x' is not public or yours", "datasets[0]")
    refused = service.as_openai_refusal(unknown, data)
    assert (refused.status, refused.field, refused.code) == (404, "training_file", "file_not_found")
    assert data.training_file in refused.message
    val = service.as_openai_refusal(ApiError(422, "unknown_dataset", "...", "eval_datasets[0]"), data)
    assert (val.status, val.field) == (404, "validation_file") and "b" * 24 in val.message
    stage = service.as_openai_refusal(ApiError(422, "dataset_not_for_stage", "pairwise", "datasets[0]"), data)
    assert (stage.status, stage.field, stage.message) == (422, "training_file", "pairwise")
    model = service.as_openai_refusal(ApiError(422, "unknown_model", "no", "base_model"), data)
    assert model.field == "model"


def test_errors_take_openais_shape_and_status():
    request = Request(scope={"type": "http", "method": "GET", "path": "/v1/fine_tuning/jobs", "headers": []})  # pyright: ignore[reportArgumentType]
    handle = errors.OPENAI_EXCEPTION_HANDLERS[ApiError]
    answer = handle(request, ApiError(422, "invalid_field", "bad", "suffix"))
    assert answer.status_code == 400
    assert answer.content == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "suffix", "code": "invalid_field"}
    }
    assert handle(request, ApiError(404, "x", "gone")).content["error"]["type"] == "invalid_request_error"
    assert handle(request, ApiError(503, "x", "later")).content["error"]["type"] == "server_error"
    kinds = {status: errors.openai_body(status, "x", "m")["error"]["type"] for status in (401, 429)}
    assert kinds == {401: "authentication_error", 429: "rate_limit_error"}


def test_events_read_as_openais():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    base = {"at": at, "total_steps": None, "loss": None, "eval_loss": None, "learning_rate": None, "epoch": None}
    failed = history.event_of(
        {**base, "src": "e", "seq": 9, "state": "failed", "reason": "engine_error", "message": "oom"}
    )
    assert (failed.id, failed.level, failed.type, failed.message) == (
        "ftevent-e9",
        "error",
        "message",
        "The job failed: oom",
    )
    paused = history.event_of(
        {**base, "src": "e", "seq": 10, "state": "cancelled", "reason": "cancelled", "message": None}, paused=True
    )
    assert (paused.level, paused.message) == ("warn", "The job was paused")
    point = {
        **base,
        "src": "m",
        "seq": 5,
        "state": None,
        "reason": None,
        "message": None,
        "total_steps": 10,
        "loss": 1.25,
    }
    metrics = history.event_of(point)
    assert (metrics.id, metrics.type, metrics.created_at) == ("ftevent-m5", "metrics", int(at.timestamp()))
    assert metrics.data["train_loss"] == 1.25 and metrics.data["step"] == 5 and metrics.message.startswith("Step 5/10")
    assert history.event_cursor("ftevent-m5") == ("m", 5)
    with pytest.raises(ApiError):
        history.event_cursor("ftevent-x5")


def test_checkpoints_are_whole_checkpoint_folders(tmp_path: Path):
    for step, whole in ((10, True), (20, True), (30, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if whole:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "runs").mkdir()
    assert sorted(history.folder_steps(str(tmp_path))) == [10, 20]
    assert history.folder_steps(str(tmp_path / "none")) == []


def test_a_validation_file_renders_as_the_engines_eval_dataset():
    req = TrainRequest(base_model="m", datasets=["train_key"], eval_datasets=["val_key"])
    config = render_train(req, model_path="/m", default_template="default", data_dir=Path("/d"), output_dir=Path("/o"))
    assert config["eval_dataset"] == "val_key" and config["eval_strategy"] == "epoch" and "val_size" not in config
    with pytest.raises(ApiError):
        render_train(
            TrainRequest(base_model="m", datasets=["a"], eval_datasets=["b"], val_size=0.1),
            model_path="/m",
            default_template="default",
            data_dir=Path("/d"),
            output_dir=Path("/o"),
        )


def test_every_training_job_counts_the_tokens_it_trains_on():
    req = TrainRequest(base_model="m", datasets=["train_key"], stage="dpo")
    config = render_train(req, model_path="/m", default_template="default", data_dir=Path("/d"), output_dir=Path("/o"))
    assert config["include_num_input_tokens_seen"] == "non_padding"


def test_trained_tokens_are_the_engines_final_count_else_the_progresss():
    assert service.tokens_of({"num_input_tokens_seen": 1234.0, "train_loss": 1.0}, 1200) == 1234
    assert service.tokens_of({"train_loss": 1.0}, 1200) == 1200
    assert service.tokens_of(None, None) is None


def test_the_results_csv_is_openais_shape_a_row_per_logged_step():
    points = [
        {"step": 1, "loss": 2.5, "eval_loss": None},
        {"step": 2, "loss": 2.25, "eval_loss": 1.75},
        {"step": 3, "loss": None, "eval_loss": 1.5},
    ]
    assert results.metrics_csv(points).decode().splitlines() == [
        "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy",
        "1,2.5,,,",
        "2,2.25,,1.75,",
        "3,,,1.5,",
    ]
    assert results.metrics_csv([]).decode() == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n"
    # The most steps a job keeps in its CSV fit in one NATS message, whatever their losses.
    many = [{"step": i, "loss": 1 / 3 + i, "eval_loss": 2 / 3 + i} for i in range(results.MAX_ROWS)]
    assert len(results.metrics_csv(many)) <= 640 * 1024


def test_an_inference_key_may_not_fine_tune():
    from services.common.security import check_key_scope

    key = Principal(user_id="u", username="u", role="user", via="api_key", scope="inference")
    for path in ("/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs/ftjob-1/cancel"):
        connection = Request(scope={"type": "http", "method": "POST", "path": path, "headers": []})  # pyright: ignore[reportArgumentType]
        with pytest.raises(ApiError) as refused:
            check_key_scope(key, connection)
        assert refused.value.status == 403
    chat = Request(scope={"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []})  # pyright: ignore[reportArgumentType]
    check_key_scope(key, chat)
