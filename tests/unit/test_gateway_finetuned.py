"""`ft:` names on the gateway (issue 18; services/gateway/lookups.py and models.py): which registry model a name
stands for, asked of the scheduler's GET /v1/fine_tuning/jobs/{id} with the caller's credential and cached; the
fine-tuned models /v1/models lists; which model DELETE /v1/models/{id} may delete. The scheduler and registry are
played by an httpx transport here; tests/integration/gateway/test_finetuned_models.py has the real ones."""

from types import SimpleNamespace

import httpx
import pytest

from services.common.errors import ApiError
from services.gateway.chat import adapter_name
from services.gateway.lookups import FineTuningJobs, RegistryModels
from services.gateway.models import checkpoint_entries, finetuned_entries, owner_in
from services.gateway.openai_shape import OpenAIError

pytestmark = pytest.mark.unit

HEX = "0123456789abcdef01234567"
NAME = f"ft:tiny-llama:alice:my-bot:{HEX}"
JOB = {
    "id": f"ftjob-{HEX}",
    "object": "fine_tuning.job",
    "model": "tiny-llama",
    "status": "succeeded",
    "fine_tuned_model": NAME,
    "created_at": 100,
    "finished_at": 200,
    "llmct": {"job_id": "job_1", "model_name": "tiny-llama-lora-abcd1234"},
}
CALLER = SimpleNamespace(headers={"authorization": "Bearer alice"})


class Upstream:
    """An upstream service: answers by path, and notes what was asked, with which credential."""

    def __init__(self, answers: dict[str, tuple[int, object]]) -> None:
        self.answers, self.asked = answers, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(
            (request.method, request.url.path, dict(request.url.params), request.headers["authorization"])
        )
        status, body = self.answers.get(request.url.path, (404, {"error": {"message": "nothing here"}}))
        if callable(body):
            body = body(request)
        return httpx.Response(status, json=body)


def jobs_of(upstream: Upstream) -> FineTuningJobs:
    return FineTuningJobs(httpx.AsyncClient(transport=httpx.MockTransport(upstream)), ["http://scheduler"])


async def refused(call) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        await call
    return caught.value


async def test_an_ft_name_is_the_registry_model_its_job_made_asked_with_the_callers_credential_once_a_second():
    scheduler = Upstream({f"/v1/fine_tuning/jobs/ftjob-{HEX}": (200, JOB)})
    jobs = jobs_of(scheduler)
    assert await jobs.model_name(CALLER, NAME) == "tiny-llama-lora-abcd1234"
    assert await jobs.model_name(CALLER, NAME) == "tiny-llama-lora-abcd1234"
    assert scheduler.asked == [("GET", f"/v1/fine_tuning/jobs/ftjob-{HEX}", {}, "Bearer alice")]


async def test_a_name_that_is_not_exactly_the_jobs_is_an_unknown_model():
    """The id alone does not make the name: another base, owner or suffix with the same id is no model."""
    jobs = jobs_of(Upstream({f"/v1/fine_tuning/jobs/ftjob-{HEX}": (200, JOB)}))
    for wrong in (f"ft:other:alice:my-bot:{HEX}", f"ft:tiny-llama:bob:my-bot:{HEX}", f"ft:tiny-llama:alice::{HEX}"):
        error = await refused(jobs.model_name(CALLER, wrong))
        assert (error.status, error.code, error.param) == (404, "model_not_found", "model")
        assert wrong in error.message


async def test_someone_elses_or_no_job_is_an_unknown_model_and_a_malformed_name_is_never_asked():
    scheduler = Upstream({})  # the scheduler's 404: no such job, or not the caller's
    jobs = jobs_of(scheduler)
    error = await refused(jobs.model_name(CALLER, NAME))
    assert (error.status, error.code) == (404, "model_not_found")
    for malformed in ("ft:", "ft:tiny-llama:alice:x:not-hex", f"ft:{HEX}", f"ft:a:b:c:{HEX}/../../x"):
        assert (await refused(jobs.model_name(CALLER, malformed))).status == 404
    assert len(scheduler.asked) == 1


async def test_a_job_at_work_or_whose_model_is_gone_says_so():
    running = {**JOB, "status": "running", "fine_tuned_model": None, "llmct": {"model_name": None}}
    jobs = jobs_of(Upstream({f"/v1/fine_tuning/jobs/ftjob-{HEX}": (200, running)}))
    error = await refused(jobs.model_name(CALLER, NAME))
    assert error.status == 404 and "is running" in error.message
    gone = {**JOB, "llmct": {"job_id": "job_1", "model_name": None}}
    jobs = jobs_of(Upstream({f"/v1/fine_tuning/jobs/ftjob-{HEX}": (200, gone)}))
    error = await refused(jobs.model_name(CALLER, NAME))
    assert error.status == 404 and "not registered" in error.message


def with_registry(upstream: Upstream) -> FineTuningJobs:
    """The scheduler and the registry, both played by `upstream` (answering by path)."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    return FineTuningJobs(http, ["http://scheduler"], ["http://registry"])


CHECKPOINT = {"id": "mdl_c", "name": "tiny-llama-sft-step6-abcd1234", "job_id": "job_1", "details": {}}


async def test_a_checkpoints_name_is_the_model_the_caller_registered_from_it():
    upstream = Upstream(
        {f"/v1/fine_tuning/jobs/ftjob-{HEX}": (200, JOB), "/api/models": (200, {"items": [CHECKPOINT]})}
    )
    assert await with_registry(upstream).model_name(CALLER, f"{NAME}:ckpt-step-6") == CHECKPOINT["name"]
    registry = [asked for asked in upstream.asked if asked[1] == "/api/models"]
    assert registry == [("GET", "/api/models", {"job": "job_1", "checkpoint_step": "6", "limit": "1"}, "Bearer alice")]


async def test_a_checkpoint_not_registered_says_how_to_register_it():
    upstream = Upstream({f"/v1/fine_tuning/jobs/ftjob-{HEX}": (200, JOB), "/api/models": (200, {"items": []})})
    error = await refused(with_registry(upstream).model_name(CALLER, f"{NAME}:ckpt-step-6"))
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")
    assert "POST /api/models/checkpoints" in error.message and '"job_id": "job_1", "step": 6' in error.message


async def test_a_checkpoint_name_that_is_not_exactly_its_jobs_is_unknown_and_the_registry_is_not_asked():
    running = {**JOB, "status": "running", "fine_tuned_model": None, "user_provided_suffix": "my-bot"}
    for job, wrong in (
        (JOB, f"ft:tiny-llama:bob:my-bot:{HEX}:ckpt-step-6"),
        (JOB, f"{NAME}:ckpt-step-06"),
        (running, f"ft:tiny-llama:alice:other:{HEX}:ckpt-step-6"),
        (running, f"ft:other:alice:my-bot:{HEX}:ckpt-step-6"),
        (running, f"ft:tiny-llama::my-bot:{HEX}:ckpt-step-6"),
    ):
        upstream = Upstream({f"/v1/fine_tuning/jobs/ftjob-{HEX}": (200, job), "/api/models": (200, {"items": []})})
        error = await refused(with_registry(upstream).model_name(CALLER, wrong))
        assert (error.status, error.code) == (404, "model_not_found") and wrong in error.message
        assert [asked[1] for asked in upstream.asked] == [f"/v1/fine_tuning/jobs/ftjob-{HEX}"], wrong
    # A running job's checkpoint: its base, suffix and id make the name (its owner's name is not told before).
    upstream = Upstream(
        {f"/v1/fine_tuning/jobs/ftjob-{HEX}": (200, running), "/api/models": (200, {"items": [CHECKPOINT]})}
    )
    assert await with_registry(upstream).model_name(CALLER, f"{NAME}:ckpt-step-6") == CHECKPOINT["name"]


async def test_someone_elses_checkpoint_is_an_unknown_model():
    upstream = Upstream({"/api/models": (200, {"items": [CHECKPOINT]})})  # the scheduler's 404: not the caller's
    error = await refused(with_registry(upstream).model_name(CALLER, f"{NAME}:ckpt-step-6"))
    assert (error.status, error.code) == (404, "model_not_found")
    assert [asked[1] for asked in upstream.asked] == [f"/v1/fine_tuning/jobs/ftjob-{HEX}"]


async def test_the_scheduler_unreachable_or_failing_is_no_unknown_model():
    def down(request):
        raise httpx.ConnectError("refused", request=request)

    jobs = FineTuningJobs(httpx.AsyncClient(transport=httpx.MockTransport(down)), ["http://scheduler"])
    error = await refused(jobs.model_name(CALLER, NAME))
    assert (error.status, error.kind) == (503, "server_error")
    jobs = jobs_of(Upstream({f"/v1/fine_tuning/jobs/ftjob-{HEX}": (401, {"error": {"message": "token expired"}})}))
    error = await refused(jobs.model_name(CALLER, NAME))
    assert error.status == 401 and error.message == "token expired"


async def test_the_succeeded_jobs_are_read_page_after_page():
    first = [{**JOB, "id": "ftjob-a"}, {**JOB, "id": "ftjob-b", "status": "running", "fine_tuned_model": None}]
    second = [{**JOB, "id": "ftjob-c", "fine_tuned_model": "ft:tiny-llama:alice::c"}]

    def page(request):
        after = request.url.params.get("after")
        return {"object": "list", "data": second if after == "ftjob-b" else first, "has_more": after is None}

    scheduler = Upstream({"/v1/fine_tuning/jobs": (200, page)})
    found = await jobs_of(scheduler).succeeded(CALLER)
    assert [j["id"] for j in found] == ["ftjob-a", "ftjob-c"]
    assert [asked[2] for asked in scheduler.asked] == [{"limit": "100"}, {"limit": "100", "after": "ftjob-b"}]


async def test_a_scheduler_without_fine_tuning_or_a_key_that_may_not_read_it_lists_none():
    assert await jobs_of(Upstream({})).succeeded(CALLER) == []
    scope = (403, {"error": {"message": "this API key is for inference only", "code": "api_key_scope"}})
    assert await jobs_of(Upstream({"/v1/fine_tuning/jobs": scope})).succeeded(CALLER) == []
    jobs = jobs_of(Upstream({f"/v1/fine_tuning/jobs/ftjob-{HEX}": scope}))
    error = await refused(jobs.model_name(CALLER, NAME))
    assert error.status == 403 and "inference only" in error.message


def test_owner_is_read_from_the_name_even_with_colons_in_it():
    assert owner_in(JOB) == "alice"
    assert owner_in({**JOB, "fine_tuned_model": f"ft:tiny-llama:a:l:i:ce::{HEX}"}) == "a:l:i:ce"
    assert owner_in({**JOB, "model": "org/base:v1", "fine_tuned_model": f"ft:org/base:v1:bob:s:{HEX}"}) == "bob"


def test_fine_tuned_models_are_listed_with_the_deployment_that_serves_them():
    deleted = {**JOB, "id": "ftjob-d", "fine_tuned_model": "ft:tiny-llama:alice::d", "llmct": {"model_name": None}}
    entries = finetuned_entries([JOB, deleted], {"tiny-llama-lora-abcd1234": "dep_1"})
    assert entries == [
        {"id": NAME, "object": "model", "created": 200, "owned_by": "alice", "root": "tiny-llama", "parent": "dep_1"}
    ]
    assert finetuned_entries([JOB], {})[0]["parent"] is None


def test_registered_checkpoints_of_succeeded_jobs_are_listed_by_their_names():
    running = {**JOB, "id": "ftjob-r", "status": "running", "fine_tuned_model": None, "llmct": {"job_id": "job_2"}}
    models = [
        {**CHECKPOINT, "created_at": "2026-01-01T00:00:10Z", "details": {"checkpoint_step": 6}},
        {**CHECKPOINT, "name": "other", "job_id": "job_2", "created_at": "2026-01-01T00:00:10Z", "details": {}},
        {**CHECKPOINT, "name": "running", "job_id": "job_2", "details": {"checkpoint_step": 2}},
        {**CHECKPOINT, "name": "someone-elses", "job_id": "job_9", "details": {"checkpoint_step": 2}},
    ]
    entries = checkpoint_entries([JOB, running], models, {CHECKPOINT["name"]: "dep_1"})
    assert entries == [
        {
            "id": f"{NAME}:ckpt-step-6",
            "object": "model",
            "created": 1767225610,
            "owned_by": "alice",
            "root": "tiny-llama",
            "parent": "dep_1",
        }
    ]


def model(name: str, source: str, owner_id: str | None, model_id: str) -> dict:
    return {"id": model_id, "name": name, "source": source, "owner_id": owner_id}


async def test_delete_finds_the_callers_own_model_by_its_exact_name_never_someone_elses():
    items = [
        model("bot-v1", "trained", "usr_bob", "mdl_bob"),  # an admin's list holds everyone's
        model("bot-v1", "trained", "usr_alice", "mdl_alice"),
        model("bot-v10", "trained", "usr_alice", "mdl_alice10"),
        model("tiny-llama", "preset", None, "mdl_preset"),
    ]
    registry = Upstream({"/api/models": (200, {"items": items})})
    models = RegistryModels(httpx.AsyncClient(transport=httpx.MockTransport(registry)), ["http://registry"])
    assert (await models.own_named(CALLER, "usr_alice", "bot-v1"))["id"] == "mdl_alice"
    assert await models.own_named(CALLER, "usr_carol", "bot-v1") is None
    assert (await models.own_named(CALLER, "usr_carol", "tiny-llama"))["id"] == "mdl_preset"
    assert registry.asked[0][2]["q"] == "bot-v1" and registry.asked[0][3] == "Bearer alice"
    assert len(registry.asked) == 3, "asked each time: a deletion follows"


async def test_the_playgrounds_adapter_may_be_an_ft_name_refused_in_the_platforms_envelope():
    scheduler = Upstream({f"/v1/fine_tuning/jobs/ftjob-{HEX}": (200, JOB)})
    jobs = jobs_of(scheduler)
    assert await adapter_name(CALLER, jobs, NAME) == "tiny-llama-lora-abcd1234"
    assert await adapter_name(CALLER, jobs, "plain-adapter") == "plain-adapter"
    with pytest.raises(ApiError) as refused:
        await adapter_name(CALLER, jobs, f"ft:tiny-llama:bob::{HEX}")
    assert (refused.value.status, refused.value.code, refused.value.field) == (404, "not_found", "adapter")
    assert len(scheduler.asked) == 1
