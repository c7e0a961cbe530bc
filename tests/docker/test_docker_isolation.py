"""A job's container sees only what is its own, against a real Docker engine (issue 14, item 3).

The job below is what an attacker's config could make the engine run: it looks for other users' datasets and
other jobs' YAML, tries to write to its model and the shared cache, and reports its user, capabilities and
environment. It must find its own files only, write to its output and scratch folders only, run as a user that is
not root with no capability and no new privileges, and hold no hub token since it downloads nothing.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import yaml

from services.agent.jobfiles import INFO_FILE
from services.agent.runtimes.base import JobSpec
from services.agent.runtimes.docker import DockerRun

from .helpers import ENGINE_ENV, new_job

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The docker tier runs as root over a root-owned storage: the job's user is then docker_options.DEFAULT_JOB_USER.
JOB_UID = 65532

PROBE = r"""
import errno, json, os, sys
cfg = json.loads(sys.argv[1])
out = {"uid": os.getuid(), "gid": os.getgid()}
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
out["cap_eff"] = status["CapEff"].strip()
out["no_new_privs"] = status["NoNewPrivs"].strip()
out["data_listing"] = sorted(os.listdir(cfg["data"]))
out["uploads_listing"] = sorted(os.listdir(os.path.join(cfg["data"], "uploads")))
out["info_keys"] = sorted(json.load(open(os.path.join(cfg["data"], "dataset_info.json"))))
def attempt(what, fn):
    try:
        fn()
        out[what] = "ok"
    except OSError as exc:
        out[what] = errno.errorcode.get(exc.errno, type(exc).__name__)
attempt("read_other_dataset", lambda: open(cfg["other_dataset"]).read())
attempt("read_other_yaml", lambda: open(cfg["other_yaml"]).read())
out["temp_listing"] = sorted(os.listdir(cfg["temp"]))
attempt("read_own_yaml", lambda: open(cfg["own_yaml"]).read())
attempt("read_own_dataset", lambda: open(cfg["own_dataset"]).read())
attempt("write_model", lambda: open(os.path.join(cfg["model"], "config.json"), "a").write("poison"))
attempt("write_cache", lambda: open(os.path.join(cfg["cache_folder"], "poison"), "w").write("x"))
attempt("write_output", lambda: open(os.path.join(cfg["output"], "result.txt"), "w").write("mine"))
attempt("write_home", lambda: open(os.path.join(os.environ["HOME"], "x"), "w").write("x"))
attempt("chown_output", lambda: os.chown(cfg["output"], 0, 0))
platform = ("DATABASE_URL", "NATS_URL", "NATS_USER", "NATS_PASSWORD", "LLMCT_SECRET_KEY")
out["secret_env"] = sorted(k for k, v in os.environ.items() if k in platform or "platform_secret" in v)
out["pids_max"] = open("/sys/fs/cgroup/pids.max").read().strip() if os.path.exists("/sys/fs/cgroup/pids.max") else ""
print("PROBE " + json.dumps(out))
"""


def plant_other_users_files(storage) -> dict[str, str]:
    """Another user's private dataset and another job's YAML beside this job's own dataset, in the shared folders."""
    uploads = storage.data / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    mine, theirs = f"usr_me__{new_job()}", f"usr_other__{new_job()}"
    (uploads / f"{mine}.jsonl").write_text('{"text": "mine"}\n')
    (uploads / f"{theirs}.jsonl").write_text('{"text": "their private data"}\n')
    info_path = storage.data / INFO_FILE
    info = json.loads(info_path.read_text())
    info[mine] = {"file_name": f"uploads/{mine}.jsonl"}
    info[theirs] = {"file_name": f"uploads/{theirs}.jsonl"}
    info_path.write_text(json.dumps(info))
    other_yaml = storage.temp / f"{new_job()}.yaml"
    other_yaml.write_text("hub_token: of another job\n")
    return {"mine": mine, "theirs": theirs, "other_yaml": str(other_yaml)}


async def run_probe(runtime, spec: JobSpec) -> tuple[dict, DockerRun]:
    run = await runtime.start(spec)

    async def collect():
        lines = [text async for _, text in run.lines()]
        return lines, await run.wait()

    lines, exit_info = await asyncio.wait_for(collect(), 120)
    assert exit_info.exit_code == 0, lines
    [report] = [line.removeprefix("PROBE ") for line in lines if line.startswith("PROBE ")]
    return json.loads(report), run


async def test_a_jobs_container_sees_only_its_own_files_and_runs_unprivileged(make_runtime, storage, docker_client):
    planted = plant_other_users_files(storage)
    job_id = new_job()
    uid = JOB_UID
    # A model and a cache folder the job's own user owns: only the read-only mounts keep it from writing there.
    model = storage.models / job_id
    cache_folder = storage.hf_cache / job_id
    for folder in (model, cache_folder):
        folder.mkdir(parents=True)
        os.chown(folder, uid, uid)
    (model / "config.json").write_text("{}")
    os.chown(model / "config.json", uid, uid)
    output = storage.output / job_id
    config = {
        "model_name_or_path": str(model),
        "dataset_dir": str(storage.data),
        "dataset": planted["mine"],
        "output_dir": str(output),
    }
    config_path = storage.temp / f"{job_id}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    uploads = storage.data / "uploads"
    paths = {
        "data": str(storage.data),
        "temp": str(storage.temp),
        "other_dataset": str(uploads / f"{planted['theirs']}.jsonl"),
        "own_dataset": str(uploads / f"{planted['mine']}.jsonl"),
        "other_yaml": planted["other_yaml"],
        "own_yaml": str(config_path),
        "model": str(model),
        "cache_folder": str(cache_folder),
        "output": str(output),
    }
    spec = JobSpec(
        job_id=job_id,
        kind="train",
        command=("python", "-c", PROBE, json.dumps(paths)),
        config_path=config_path,
        output_dir=output,
        env={**ENGINE_ENV, "HF_TOKEN": "hf_platform_secret", "MODELSCOPE_API_TOKEN": "ms_platform_secret"},
    )
    runtime = make_runtime()
    report, _ = await run_probe(runtime, spec)

    # Only its own dataset: other users' datasets and their names are not there.
    assert report["data_listing"] == ["dataset_info.json", "uploads"], report
    assert report["uploads_listing"] == [f"{planted['mine']}.jsonl"], report
    assert report["info_keys"] == [planted["mine"]], report
    assert report["read_other_dataset"] == "ENOENT" and report["read_own_dataset"] == "ok", report
    # Only its own YAML: the temp folder of every job's is not there.
    assert report["read_other_yaml"] == "ENOENT", report
    assert report["temp_listing"] == sorted([config_path.name, "jobs"]), report  # jobs/<its id>: its scratch
    assert report["read_own_yaml"] == "ok", report
    # Its model and the shared cache are read-only; its output and HOME are its own.
    assert report["write_model"] == "EROFS" and report["write_cache"] == "EROFS", report
    assert report["write_output"] == "ok" and report["write_home"] == "ok", report
    assert (output / "result.txt").read_text() == "mine" and "poison" not in (model / "config.json").read_text()
    # Not root, no capability, no new privileges, a pids limit; no hub token in a job that downloads nothing.
    assert report["uid"] == report["gid"] == JOB_UID, report
    assert int(report["cap_eff"], 16) == 0 and report["no_new_privs"] == "1", report
    assert report["chown_output"] == "EPERM", report
    assert report["secret_env"] == [], report
    host = docker_client.api.inspect_container(f"llm-train-{job_id}")["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges:true"], host
    assert host["PidsLimit"] == 8192 and host["Memory"] > 0 and host["Memory"] == host["MemorySwap"], host
    if report["pids_max"]:
        assert report["pids_max"] == "8192", report


async def test_a_stage_that_downloads_gets_the_token_and_its_own_cache(make_runtime, storage):
    """A stage whose model comes from a hub gets the hub's token, and downloads into its own scratch cache: the
    shared cache stays read-only."""
    job_id = new_job()
    config_path = storage.temp / f"{job_id}.yaml"
    config_path.write_text("{}\n")
    code = (
        "import os, json; print('PROBE ' + json.dumps({'token': os.environ.get('HF_TOKEN'), "
        "'hub_cache': os.environ['HF_HUB_CACHE'], 'offline': os.environ.get('HF_HUB_OFFLINE')})); "
        "os.makedirs(os.environ['HF_HUB_CACHE'], exist_ok=True); "
        "open(os.path.join(os.environ['HF_HUB_CACHE'], 'downloaded'), 'w').write('x')"
    )
    spec = JobSpec(
        job_id=job_id,
        kind="train",
        command=("python", "-c", code),
        config_path=config_path,
        output_dir=storage.output / job_id,
        env={"HF_TOKEN": "hf_platform_secret", "PYTHONUNBUFFERED": "1"},
        downloads=True,
    )
    runtime = make_runtime()
    report, _ = await run_probe(runtime, spec)
    assert report["token"] == "hf_platform_secret" and report["offline"] is None, report
    assert report["hub_cache"].startswith(str(runtime.plan.scratch(spec))), report
    assert (runtime.plan.scratch(spec) / "hub" / "downloaded").exists()
