"""Results files of fine-tuning jobs on the real datasets service: the scheduler asks over the real NATS
(`llmct.datasets.result_file`), the file is the owner's (purpose `fine-tune-results`), its CSV comes back from
`GET /v1/files/{id}/content`, asking twice answers the same file, and nobody else reads it."""

from __future__ import annotations

import nats
import pytest

from services.common.contracts import ResultFileAsked, ResultFileStored, Subjects
from services.common.errors import ApiError
from services.common.requests import ask
from services.common.security import new_id

pytestmark = pytest.mark.integration

CSV = b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n1,2.5,,,\n2,2.25,,1.75,\n"


@pytest.fixture
async def asker(client, settings):
    """The scheduler's side: a connection of the services' user (the datasets app of `client` answers)."""
    nc = await nats.connect(settings.nats_url)
    yield nc
    await nc.drain()


async def store(nc, user_id: str, job_id: str, content: bytes = CSV) -> str:
    asked = ResultFileAsked(user_id=user_id, job_id=job_id, filename=f"{job_id}-results.csv", content=content)
    return (await ask(nc, Subjects.RESULT_FILE, asked, ResultFileStored, owner="datasets")).file_id


async def test_a_results_file_is_the_owners_and_asking_twice_gives_the_same(asker, alice, bob):
    job_id = new_id("ftjob")
    file_id = await store(asker, alice.user_id, job_id)
    assert file_id.startswith("file-")
    assert await store(asker, alice.user_id, job_id, b"step\n") == file_id  # the one file of this job

    r = await alice.client.get(f"/v1/files/{file_id}", headers=alice.headers)
    assert r.status_code == 200, r.text
    found = r.json()
    assert (found["purpose"], found["bytes"], found["filename"]) == (
        "fine-tune-results",
        len(CSV),
        f"{job_id}-results.csv",
    )
    listed = (
        await alice.client.get("/v1/files", params={"purpose": "fine-tune-results"}, headers=alice.headers)
    ).json()
    assert [f["id"] for f in listed["data"]] == [file_id]

    r = await alice.client.get(f"/v1/files/{file_id}/content", headers=alice.headers)
    assert r.status_code == 200 and r.content == CSV and r.headers["content-type"].startswith("text/csv")
    r = await alice.client.get(f"/v1/files/{file_id}/content", headers={**alice.headers, "Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == CSV[:4]

    for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content"):
        assert (await bob.client.get(path, headers=bob.headers)).status_code == 404
    assert (await bob.client.delete(f"/v1/files/{file_id}", headers=bob.headers)).status_code == 404
    assert (await bob.client.get("/v1/files", headers=bob.headers)).json()["data"] == []


async def test_a_results_file_is_no_training_data_and_deletes(asker, alice):
    file_id = await store(asker, alice.user_id, new_id("ftjob"))
    # Not a dataset: a job cannot train on it (the scheduler's datasets_for_job finds no such name).
    assert (await alice.get("", q=file_id)).json()["items"] == []
    r = await alice.client.delete(f"/v1/files/{file_id}", headers=alice.headers)
    assert r.status_code == 200 and r.json() == {"id": file_id, "object": "file", "deleted": True}
    assert (await alice.client.get(f"/v1/files/{file_id}/content", headers=alice.headers)).status_code == 404


async def test_a_results_file_needs_a_user_and_one_owner_per_job(asker, alice, bob):
    with pytest.raises(ApiError) as refused:
        await store(asker, new_id("usr"), new_id("ftjob"))
    assert refused.value.status == 404 and refused.value.code == "unknown_user"
    job_id = new_id("ftjob")
    await store(asker, alice.user_id, job_id)
    with pytest.raises(ApiError) as refused:
        await store(asker, bob.user_id, job_id)  # the job's file is alice's: bob is not given it
    assert refused.value.status == 409
