"""A real LoRA SFT on the tiny model through the whole platform, with the process runtime."""

import io
import zipfile

import pytest
import websockets

from .helpers import TRAIN, admin_token, bearer, login, read_logs, unique, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_lora_sft_end_to_end(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("trainer"))
    r = await gw.post("/api/jobs", json=TRAIN, headers=headers)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] in ("pending", "dispatched", "running")
    assert "finetuning_type: lora" in job["config_yaml"] and job["config"]["output_dir"].endswith(job["id"])
    assert job["estimate"]["total_mb"] > 0

    token = headers["Authorization"].split()[1]
    ws_url = stack.gateway_url.replace("http", "ws") + f"/api/jobs/{job['id']}/logs"
    try:
        lines = await read_logs(ws_url, token, until=lambda ls: any("'loss'" in line["text"] for line in ls))
    except TimeoutError as exc:
        detail = (await gw.get(f"/api/jobs/{job['id']}", headers=headers)).json()
        busy = (
            await gw.get(
                "/api/jobs",
                headers={"Authorization": f"Bearer {await admin_token(gw, stack)}"},
                params={"state": "running"},
            )
        ).json()
        raise AssertionError(f"no loss line: job {detail['state']} {detail['history']}; running: {busy}") from exc
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(seqs) and seqs[0] == 1, "replay starts at the first line, in order"

    done = await wait_for_state(gw, headers, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done["message"]
    assert [h["state"] for h in done["history"]][:1] == ["pending"]
    assert {"dispatched", "running", "succeeded"} <= {h["state"] for h in done["history"]}
    series = done["progress_series"]
    assert series and series[-1]["step"] == 12 and series[-1]["total_steps"] == 12
    assert all(p["loss"] is not None for p in series)

    # A viewer arriving after the end still gets everything, and can resume after a sequence number.
    everything = await read_logs(ws_url, token, until=lambda ls: any("job succeeded" in line["text"] for line in ls))
    resumed = await read_logs(
        ws_url, token, after=5, until=lambda ls: any("job succeeded" in line["text"] for line in ls)
    )
    assert resumed[0]["seq"] == 6 and resumed[-1]["seq"] == everything[-1]["seq"]

    r = await gw.get(f"/api/jobs/{job['id']}/artifacts", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert any(n.endswith("adapter_model.safetensors") for n in names)
    assert any(n.endswith("adapter_config.json") for n in names)
    log = await gw.get(f"/api/jobs/{job['id']}/log", headers=headers)
    assert log.status_code == 200 and "'loss'" in log.text

    listing = (await gw.get("/api/jobs", headers=headers, params={"state": "succeeded"})).json()
    assert job["id"] in [j["id"] for j in listing["items"]]

    # Another user's job is a 404 on every route, WebSockets included.
    other = await login(gw, stack.invite_code, unique("not-the-trainer"))
    for method, path in (("GET", ""), ("POST", "/cancel"), ("GET", "/artifacts"), ("GET", "/log")):
        r = await gw.request(method, f"/api/jobs/{job['id']}{path}", headers=other)
        assert r.status_code == 404, (path, r.status_code)
    assert job["id"] not in [j["id"] for j in (await gw.get("/api/jobs", headers=other)).json()["items"]]
    other_token = other["Authorization"].split()[1]
    async with websockets.connect(ws_url, additional_headers=bearer(other_token)) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4404


async def test_validation_passes_draw_an_eval_curve(gw, stack, tiny_model):
    """With a validation share and eval_steps, each validation pass is a point of the progress series, merged
    into the training point of the same step (the trainer logs them as separate lines)."""
    headers = await login(gw, stack.invite_code, unique("evaluator-curve"))
    body = {**TRAIN, "val_size": 0.25, "evaluation_strategy": "steps", "eval_steps": 4}
    r = await gw.post("/api/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    done = await wait_for_state(gw, headers, r.json()["id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done["message"]
    series = {p["step"]: p for p in done["progress_series"]}
    assert sorted(series) == list(range(1, 13)), "one point per step, validation passes merged in"
    evaluated = sorted(step for step, p in series.items() if p["eval_loss"] is not None)
    assert evaluated == [4, 8, 12], evaluated
    assert all(series[step]["loss"] is not None and series[step]["eval_loss"] > 0 for step in evaluated)
