"""`llmct`'s user commands against the real stack, run as a user would: a process with its own config folder. Log
in with a password (an API key is made and stored 0600), upload a dataset, preview and submit a tiny job, follow its
log to the end, list it as JSON, download its outputs (and resume a broken download); a refused request exits 1
with the API's message and field; a revoked key exits 3."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .helpers import ROOT, TRAIN, bearer, login, unique

pytestmark = pytest.mark.e2e

PASSWORD = "cli-pass-2026-long"
ROWS = [{"instruction": f"Say {word}.", "input": "", "output": word} for word in ("one", "two", "three", "four")] * 4


class Llmct:
    """The `llmct` command as a process, with a config folder of its own and nothing from the test's environment."""

    def __init__(self, config_home: Path):
        self.config_home = config_home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCT_")}
        self.env.update({"XDG_CONFIG_HOME": str(config_home), "PYTHONPATH": str(ROOT), "COLUMNS": "200"})

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60, **env: str):
        return subprocess.run(
            [sys.executable, "-m", "llmct.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **env},
            cwd=ROOT,
        )

    def on_terminal(self, *args: str, timeout: float = 60) -> tuple[int, str]:
        """Run with stdout and stderr on a pseudo-terminal (progress bars drawn); the exit code and what it wrote."""
        main, child = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "llmct.cli", *args], stdout=child, stderr=child, env=self.env, cwd=ROOT
        )
        os.close(child)
        written = b""
        with contextlib.suppress(OSError):  # EIO: the child closed the terminal
            while chunk := os.read(main, 65536):
                written += chunk
        os.close(main)
        return process.wait(timeout=timeout), written.decode(errors="replace")

    @property
    def stored(self) -> dict:
        import tomllib

        return tomllib.loads((self.config_home / "llmct" / "config.toml").read_text())


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


async def test_a_user_trains_follows_and_downloads_from_the_command_line(gw, stack, tiny_model, tmp_path):
    username = unique("cli")
    headers = await login(gw, stack.invite_code, username, PASSWORD)
    llmct = Llmct(tmp_path / "config")

    # Log in: the password from stdin, an API key created and stored where only the user reads it.
    ok(llmct("login", "--url", stack.gateway_url, "--username", username, stdin=PASSWORD + "\n"))
    path = tmp_path / "config" / "llmct" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = llmct.stored["api_key"]
    keys = (await gw.get("/api/auth/api-keys", headers=headers)).json()
    assert [k["id"] for k in keys] == [llmct.stored["api_key_id"]] and key.startswith(keys[0]["prefix"])

    # Upload a dataset; it is listed, as JSON for scripts.
    data = tmp_path / "say_words.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    name = ok(llmct("datasets", "upload", str(data))).strip()
    assert name == "say_words"
    listed = json.loads(ok(llmct("datasets", "list", "--json", "-q", "say_words")))
    assert [(d["name"], d["rows"], d["visibility"]) for d in listed] == [("say_words", 16, "private")]

    # The dry run prints exactly the YAML the API renders; nothing is queued.
    flags = ["--base-model", tiny_model, "--dataset", name, "--gpus", "0", "--max-steps", "4", "--lora-rank", "4"]
    flags += ["--batch-size", "2", "--cutoff-len", "128", "--set", "logging_steps=1", "--set", "save_steps=2"]
    flags += ["--set", "gradient_accumulation_steps=1"]
    preview = ok(llmct("jobs", "submit", *flags, "--dry-run"))
    body = {**TRAIN, "datasets": [name], "max_steps": 4, "save_steps": 2}
    api_preview = await gw.post("/api/jobs", params={"dry_run": "true"}, json=body, headers=headers)
    assert preview == api_preview.json()["config_yaml"]
    assert json.loads(ok(llmct("jobs", "list", "--json"))) == []

    # Submit, then follow the log to the end: exit 0 once the job succeeded, its last lines there.
    job_id = ok(llmct("jobs", "submit", *flags)).strip()
    followed = llmct("jobs", "logs", "-f", job_id, timeout=400)
    lines = ok(followed).splitlines()
    assert lines[-1] == "job succeeded", lines[-5:]
    assert f"job {job_id} succeeded" in followed.stderr
    assert any("'loss'" in line for line in lines), "the engine's own lines came through"
    assert "job succeeded" in ok(llmct("jobs", "logs", job_id)), "without -f: the stored log"
    code, drawn = llmct.on_terminal("jobs", "logs", "-f", job_id)  # on a terminal: the log above a progress bar
    assert code == 0 and "job succeeded" in drawn and f"{job_id} succeeded" in drawn and "4/4" in drawn, drawn

    listed_jobs = json.loads(ok(llmct("jobs", "list", "--json")))
    assert [(j["id"], j["state"]) for j in listed_jobs] == [(job_id, "succeeded")]
    shown = ok(llmct("jobs", "show", job_id))
    assert job_id in shown and "succeeded" in shown

    # Download the outputs; a broken download goes on from where it stopped (Range, If-Range with the ETag).
    out = tmp_path / "out"
    target = Path(ok(llmct("download", job_id, "--out", str(out))).strip())
    whole = target.read_bytes()
    assert target == out / f"{job_id}.zip" and "adapter_config.json" in " ".join(zipfile.ZipFile(target).namelist())
    etag = (await gw.get(f"/api/jobs/{job_id}/artifacts", headers=headers)).headers["etag"]
    half = len(whole) // 2
    part, tag = Path(f"{target}.part"), Path(f"{target}.part.etag")
    part.write_bytes(b"\0" * half)  # marked bytes: kept as they are, only the rest is asked for
    tag.write_text(etag)
    ok(llmct("download", job_id, "--out", str(out)))
    assert target.read_bytes() == b"\0" * half + whole[half:] and not part.exists() and not tag.exists()
    part.write_bytes(b"\0" * half)  # of another version of the outputs: the whole file comes again
    tag.write_text('"stale"')
    ok(llmct("download", job_id, "--out", str(out)))
    assert target.read_bytes() == whole

    # Log out: the key login made is revoked.
    ok(llmct("logout"))
    assert not path.exists()
    assert (await gw.get("/api/auth/me", headers=bearer(key))).status_code == 401


async def test_refusals_and_a_revoked_key_give_exit_codes_scripts_can_trust(gw, stack, tiny_model, tmp_path):
    username = unique("cli-refused")
    headers = await login(gw, stack.invite_code, username, PASSWORD)
    made = (await gw.post("/api/auth/api-keys", json={"name": "script"}, headers=headers)).json()
    llmct = Llmct(tmp_path / "config")
    ok(llmct("login", "--url", stack.gateway_url, "--api-key", "-", stdin=made["key"] + "\n"))

    # The API refuses: exit 1, its message and the field to fix on stderr.
    refused = llmct("jobs", "submit", "--base-model", tiny_model, "--dataset", "no-such-data", "--gpus", "0")
    assert refused.returncode == 1, refused
    assert "(field: datasets[0])" in refused.stderr and "no-such-data" in refused.stderr
    missing = llmct("jobs", "show", "job_0000000000000000")
    assert missing.returncode == 1 and "HTTP 404 not_found: job not found" in missing.stderr

    # A usage error is 2 and sends nothing; an unknown job's log cannot be followed (1).
    assert llmct("jobs", "submit", "--max-steps", "many").returncode == 2
    assert llmct("jobs", "logs", "-f", "job_0000000000000000").returncode == 1

    # The key revoked (in the web client, say): exit 3, and the message says to log in again.
    await gw.delete(f"/api/auth/api-keys/{made['id']}", headers=headers)
    revoked = llmct("jobs", "list")
    assert revoked.returncode == 3 and "llmct login" in revoked.stderr
    # An environment's key wins over the stored one (CI); so does its URL: nothing listens there.
    assert llmct("jobs", "list", LLMCT_URL="http://127.0.0.1:9").returncode == 3


async def test_deploy_waits_until_ready_and_chat_streams(gw, stack, tiny_model, tmp_path):
    username = unique("cli-chat")
    headers = await login(gw, stack.invite_code, username, PASSWORD)
    llmct = Llmct(tmp_path / "config")
    ok(llmct("login", "--url", stack.gateway_url, "--username", username, stdin=PASSWORD + "\n"))
    deployed = llmct("deploy", tiny_model, "--gpus", "0", "--set", "generation.max_new_tokens=8", timeout=240)
    deployment_id = ok(deployed).strip()
    try:
        state = (await gw.get(f"/api/deployments/{deployment_id}", headers=headers)).json()["state"]
        assert state == "ready", "deploy returned once the model answered"
        answer = ok(llmct("chat", deployment_id, "-m", "Say one.", "--max-tokens", "8"))
        assert answer.endswith("\n")
        piped = ok(llmct("chat", tiny_model, "--max-tokens", "4", stdin="Say two."))  # by name, the message piped
        assert piped.endswith("\n")
        unknown = llmct("chat", "dep_0000000000000000", "-m", "hi")
        assert unknown.returncode == 1 and "(field: model)" in unknown.stderr, unknown.stderr
    finally:
        await gw.post(f"/api/deployments/{deployment_id}/stop", headers=headers)


async def test_cancel_retry_and_resume_and_a_follow_that_ends_cancelled(gw, stack, tiny_model, tmp_path):
    username = unique("cli-cancel")
    await login(gw, stack.invite_code, username, PASSWORD)
    llmct = Llmct(tmp_path / "config")
    ok(llmct("login", "--url", stack.gateway_url, "--username", username, stdin=PASSWORD + "\n"))
    flags = ["--base-model", tiny_model, "--dataset", "tiny_sft", "--gpus", "0", "--max-steps", "100000"]
    job_id = ok(llmct("jobs", "submit", *flags, "--set", "save_steps=100000")).strip()
    assert ok(llmct("jobs", "cancel", job_id)).startswith(job_id)

    # Following a job that ends cancelled exits 4, the state on stderr.
    followed = llmct("jobs", "logs", "-f", job_id, timeout=200)
    assert followed.returncode == 4 and f"job {job_id} cancelled" in followed.stderr, followed.stderr

    # It saved no checkpoint: resume is refused (1, the API's code and message); retry queues it again.
    resumed = llmct("jobs", "resume", job_id)
    assert resumed.returncode == 1 and "HTTP 409 no_checkpoint" in resumed.stderr, resumed.stderr
    retried = json.loads(ok(llmct("jobs", "retry", job_id, "--json")))
    assert retried["id"] == job_id and retried["state"] not in ("cancelled", "failed", "succeeded")
    ok(llmct("jobs", "cancel", job_id))
