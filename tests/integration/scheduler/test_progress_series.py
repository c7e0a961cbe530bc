"""A job's detail carries a bounded progress series (issue 14, item 7): a long run's thousands of points are
thinned evenly to `series_points` (first and last kept), and `series_after_step` pages on from a step."""

from __future__ import annotations

import pytest

from .helpers import job_on

pytestmark = pytest.mark.integration

AGENT = "progress-agent"


async def with_points(pool, people, tmp_path, steps: int) -> str:
    owner_id, _ = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1)
    await pool.execute(
        "INSERT INTO job_progress (job_id, step, total_steps, loss) "
        "SELECT $1, s, $2, 1.0 / s FROM generate_series(1, $2) AS s",
        job_id,
        steps,
    )
    return job_id


async def test_a_long_series_is_thinned_to_the_asked_size(scheduler, pool, people, tmp_path):
    _, owner = people["fleet-owner"]
    job_id = await with_points(pool, people, tmp_path, 20_000)
    r = await scheduler.get(f"/api/jobs/{job_id}", headers=owner)
    assert r.status_code == 200, r.text
    detail = r.json()
    steps = [p["step"] for p in detail["progress_series"]]
    assert detail["progress_points"] == 20_000
    assert len(steps) <= 1000 and len(steps) >= 900, len(steps)
    assert steps[0] == 1 and steps[-1] == 20_000 and steps == sorted(steps)
    gaps = {b - a for a, b in zip(steps, steps[1:-1], strict=False)}
    assert len(gaps) == 1, "evenly thinned"

    r = await scheduler.get(f"/api/jobs/{job_id}", params={"series_points": 10}, headers=owner)
    steps = [p["step"] for p in r.json()["progress_series"]]
    assert len(steps) <= 10 and steps[0] == 1 and steps[-1] == 20_000


async def test_the_series_pages_on_from_a_step(scheduler, pool, people, tmp_path):
    _, owner = people["fleet-owner"]
    job_id = await with_points(pool, people, tmp_path, 30)
    r = await scheduler.get(f"/api/jobs/{job_id}", params={"series_after_step": 25}, headers=owner)
    detail = r.json()
    assert [p["step"] for p in detail["progress_series"]] == [26, 27, 28, 29, 30]
    assert detail["progress_points"] == 5
    r = await scheduler.get(f"/api/jobs/{job_id}", headers=owner)
    assert len(r.json()["progress_series"]) == 30, "a short series comes whole"


@pytest.mark.parametrize("params", [{"series_points": 1}, {"series_points": 5001}, {"series_after_step": -2}])
async def test_a_window_out_of_bounds_is_a_422(scheduler, pool, people, tmp_path, params):
    _, owner = people["fleet-owner"]
    job_id = await with_points(pool, people, tmp_path, 3)
    r = await scheduler.get(f"/api/jobs/{job_id}", params=params, headers=owner)
    assert r.status_code in (400, 422), r.text
    assert set(r.json()) == {"error"}
