"""The user commands' pure parts (llmct/client): the config file and its overrides, error answers as exit codes,
job bodies from a file and flags, the end of a followed log, resumable downloads' headers, and `main`'s exit codes
for what needs no gateway."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import stat
import threading
import time

import click
import pytest

from llmct import cli as operator_cli
from llmct.client import app, bodies, config, follow, serving, transfer
from llmct.client.errors import CliError, Exit, api_error, exit_code_of, refusal_of
from llmct.client.output import clean

pytestmark = pytest.mark.unit


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh XDG_CONFIG_HOME and no overrides from the environment."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(config.URL_VAR, raising=False)
    monkeypatch.delenv(config.KEY_VAR, raising=False)
    return tmp_path / "config"


# --- the config file --------------------------------------------------------------------------------------------


def test_config_is_written_private_and_read_back(home):
    stored = config.Config(url="http://127.0.0.1:8080", api_key='llmct_a"b\\c\nd', api_key_id="key_1", username="zoë")
    path = config.save(stored)
    assert path == home / "llmct" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert config.load() == stored
    assert not list(path.parent.glob(".*tmp")), "no temporary file is left behind"


def test_environment_overrides_the_stored_login(home, monkeypatch):
    config.save(config.Config(url="http://a:1", api_key="stored", api_key_id="key_1"))
    monkeypatch.setenv(config.URL_VAR, "http://b:2")
    monkeypatch.setenv(config.KEY_VAR, "from-env")
    loaded = config.load()
    assert (loaded.url, loaded.api_key) == ("http://b:2", "from-env")
    assert loaded.api_key_id is None, "the stored key's id does not belong to another key"


def test_a_config_others_may_read_is_used_with_a_warning(home, capsys):
    path = config.save(config.Config(url="http://a:1", api_key="k"))
    os.chmod(path, 0o644)
    assert config.load().api_key == "k"
    assert "chmod 600" in capsys.readouterr().err


def test_a_broken_config_is_a_usage_error_naming_the_file(home):
    path = config.config_path()
    path.parent.mkdir(parents=True)
    path.write_text("url = ")
    with pytest.raises(CliError) as refused:
        config.load()
    assert refused.value.code == Exit.USAGE and str(path) in refused.value.message


def test_forget_removes_the_login(home):
    config.save(config.Config(url="http://a:1", api_key="k"))
    assert config.forget() and not config.forget()
    assert config.load() == config.Config()


@pytest.mark.parametrize(
    "url", ["ftp://host", "host:8080", "http://user:pw@host", "http://host/api", "http://host?x=1", "http://"]
)
def test_only_a_gateways_base_url_is_taken(url):
    with pytest.raises(CliError) as refused:
        config.normalized_url(url)
    assert refused.value.code == Exit.USAGE


def test_a_base_url_loses_its_trailing_slash():
    assert config.normalized_url(" https://llm.example.com/ ") == "https://llm.example.com"
    assert config.is_loopback("http://127.0.0.1:8080") and not config.is_loopback("http://10.0.0.1")


# --- error answers and exit codes -------------------------------------------------------------------------------


def test_the_platforms_error_envelope_is_read():
    body = json.dumps({"error": {"code": "invalid_field", "message": "max_steps must be >= 1", "field": "max_steps"}})
    refusal = refusal_of(422, body.encode())
    assert (refusal.code, refusal.field) == ("invalid_field", "max_steps")
    assert refusal.text() == "HTTP 422 invalid_field: max_steps must be >= 1 (field: max_steps)"


def test_openais_error_envelope_is_read():
    body = {"error": {"message": "no such model", "type": "invalid_request_error", "param": "model", "code": "x"}}
    refusal = refusal_of(404, json.dumps(body).encode())
    assert (refusal.message, refusal.field, refusal.code) == ("no such model", "model", "x")


def test_an_answer_without_an_envelope_still_says_something():
    assert refusal_of(502, b"<html>Bad Gateway</html>").message == "<html>Bad Gateway</html>"
    assert refusal_of(500, b"").message == "Internal Server Error"


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, Exit.REFUSED), (403, Exit.REFUSED), (404, Exit.REFUSED), (409, Exit.REFUSED), (422, Exit.REFUSED),
     (429, Exit.REFUSED), (500, Exit.REFUSED), (401, Exit.UNREACHABLE), (502, Exit.UNREACHABLE),
     (503, Exit.UNREACHABLE), (504, Exit.UNREACHABLE)],
)  # fmt: skip
def test_exit_codes_of_error_answers(status, code):
    assert exit_code_of(status) == code
    assert api_error(status, b"{}").code == code


def test_text_from_the_gateway_cannot_drive_the_terminal():
    assert clean("job\x1b]0;owned\x07 done\r\nnext\x9b2J") == "job ]0;owned  done  next 2J"
    assert clean(None) == "-" and clean(0.123456) == "0.1235"


# --- request bodies ---------------------------------------------------------------------------------------------


def test_a_job_body_is_the_file_then_the_flags_then_each_set(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("base_model: tiny\ndatasets: [a]\nmax_steps: 100\nconfig_overrides: {seed: 1}\n")
    body = bodies.job_body(
        bodies.read_job_file(path),
        {"max_steps": 5, "gpus": 0, "stage": None},
        ["b", "c"],
        ["warmup_steps=2", "config_overrides.report_to=none", "val_size=0.1", "gradient_checkpointing=false"],
    )
    assert body == {
        "kind": "train",
        "base_model": "tiny",
        "datasets": ["b", "c"],
        "max_steps": 5,
        "gpu_count": 0,
        "warmup_steps": 2,
        "val_size": 0.1,
        "gradient_checkpointing": False,
        "config_overrides": {"seed": 1, "report_to": "none"},
    }


def test_a_job_files_tracking_reaches_the_body_and_a_set_adds_to_it(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "base_model: tiny\ndatasets: [a]\ntracking:\n  mlflow: {tracking_uri: 'https://mlflow.example.com', "
        "experiment: team}\n  wandb: {project: p, mode: offline, tags: [x]}\n"
    )
    body = bodies.job_body(bodies.read_job_file(path), {}, [], ["tracking.tensorboard=true"])
    assert body["tracking"] == {
        "mlflow": {"tracking_uri": "https://mlflow.example.com", "experiment": "team"},
        "wandb": {"project": "p", "mode": "offline", "tags": ["x"]},
        "tensorboard": True,
    }


def test_a_jobs_tracking_reads_as_links_or_where_its_files_are():
    from llmct.client.jobs import tracking_text

    runs = [
        {"kind": "mlflow", "url": "https://m.example.com/#/experiments/1/runs/r", "run_id": "r", "folder": None},
        {"kind": "wandb", "url": None, "run_id": "llmct-1", "mode": "offline", "folder": "wandb"},
        {"kind": "tensorboard", "url": None, "folder": "runs"},
    ]
    assert tracking_text(runs) == (
        "mlflow https://m.example.com/#/experiments/1/runs/r; wandb outputs/wandb/; tensorboard outputs/runs/"
    )
    assert tracking_text([]) is None


@pytest.mark.parametrize("text", ["no_equals", "=3", "a..b=1"])
def test_a_bad_set_is_a_usage_error(text):
    with pytest.raises(CliError) as refused:
        bodies.parse_setting(text)
    assert refused.value.code == Exit.USAGE


def test_a_job_file_must_hold_a_mapping(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(CliError, match="mapping"):
        bodies.read_job_file(path)


@pytest.mark.parametrize(
    ("file", "name"),
    [("tiny_sft.jsonl", "tiny_sft"), ("my data (v2).json", "my-data--v2-"), ("__x__y.tar.gz", "x_y"),
     ("a.b.parquet", "a.b")],
)  # fmt: skip
def test_a_dataset_name_from_a_file_name(tmp_path, file, name):
    assert bodies.dataset_name(tmp_path / file) == name


def test_a_deployment_body_names_the_engine_only_when_asked():
    assert serving.deployment_body("m", {"engine": None, "gpus": 0}, ()) == {"model": "m", "gpu_count": 0}
    body = serving.deployment_body("m", {"engine": "vllm", "gpus": None}, ("generation.max_new_tokens=8",))
    assert body == {"model": "m", "engine": "vllm", "generation": {"max_new_tokens": 8}}


def test_server_sent_events_until_done():
    lines = ['data: {"a": 1}', "", ": keep-alive", 'data: {"b": 2}', "data: [DONE]", 'data: {"c": 3}']
    assert list(serving.sse_data(iter(lines))) == [{"a": 1}, {"b": 2}]


# --- the end of a followed log ----------------------------------------------------------------------------------


class Collected:
    def __init__(self) -> None:
        self.lines: list[tuple[str, int]] = []

    def line(self, line: dict, attempt: int) -> None:
        self.lines.append((line["text"], attempt))

    def notice(self, notice: dict) -> None:
        self.lines.append((f"notice {notice['state']}", 0))

    def progress(self, state: str, progress: dict | None) -> None:
        pass


def frame(attempt: int, *lines: tuple[int, str, str]) -> dict:
    return {"job_id": "j", "attempt": attempt, "lines": [{"seq": s, "stream": st, "text": t} for s, st, t in lines]}


async def test_the_agents_closing_line_ends_the_wait_at_once():
    watch, shown = follow.Watch(), Collected()
    follow.show_frame(frame(1, (1, "stdout", "step 1"), (2, "system", "job failed: oom")), watch, shown)
    assert watch.position == "1.2" and watch.closing_state == "failed"
    follow.show_frame(frame(2, (1, "system", "attempt 2")), watch, shown)
    assert watch.closing_state is None, "a retry's lines reopen the log"
    follow.show_frame(frame(2, (2, "system", "job succeeded")), watch, shown)
    watch.end(follow.Ending("succeeded"))
    watch.last_line_at = time.monotonic()
    async with asyncio.timeout(1):
        await follow.drained(watch)
    assert shown.lines[-1] == ("job succeeded", 2)


async def test_without_a_closing_line_the_wait_ends_after_a_quiet_moment(monkeypatch):
    monkeypatch.setattr(follow, "QUIET_S", 0.3)
    watch = follow.Watch()
    watch.end(follow.Ending("cancelled"))
    started = time.monotonic()
    await follow.drained(watch)
    assert time.monotonic() - started < 1


# --- resumable downloads ----------------------------------------------------------------------------------------


def test_a_download_resumes_only_with_the_etag_of_what_it_has(tmp_path):
    part = transfer.Part(tmp_path / "job.zip")
    assert part.resume_headers() == {}
    part.data.write_bytes(b"x" * 10)
    assert part.resume_headers() == {}, "bytes of an unknown version are not resumed"
    part.tag.write_text('"abc"\n')
    assert part.resume_headers() == {"Range": "bytes=10-", "If-Range": '"abc"'}
    part.done()
    assert (tmp_path / "job.zip").read_bytes() == b"x" * 10 and not part.tag.exists()


# --- main: dispatch and exit codes without a gateway ------------------------------------------------------------


def test_the_operator_command_lists_every_user_command():
    assert set(operator_cli.USER_HELP) == set(app.cli.commands)


def test_no_login_exits_3(home, capsys):
    assert operator_cli.main(["jobs", "list"]) == Exit.UNREACHABLE
    assert "not logged in" in capsys.readouterr().err


def test_an_unreachable_gateway_exits_3(home, monkeypatch, capsys):
    monkeypatch.setenv(config.URL_VAR, "http://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.setenv(config.KEY_VAR, "llmct_x")
    assert app.main(["jobs", "show", "job_x"]) == Exit.UNREACHABLE
    assert "cannot reach the gateway at http://127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["jobs", "nosuch"], ["jobs", "submit", "--max-steps", "many"], ["download"],
     ["login", "--api-key", "k", "-u", "a"], ["jobs", "submit", "--set", "oops"],
     ["login", "--url", "ftp://x", "--api-key", "k"]],
)  # fmt: skip
def test_usage_errors_exit_2(home, argv):
    assert app.main(argv) == Exit.USAGE


def test_help_names_the_exit_codes(capsys):
    assert app.main(["--help"]) == Exit.OK
    out = capsys.readouterr().out
    assert "Exit codes: 0 done; 1 the gateway refused" in " ".join(out.split())
    assert isinstance(app.cli, click.Group)


# --- what a gateway (or something posing as one) answers cannot take the key or files elsewhere ------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    """A loopback server: answers `answer` (status, headers, body) and records each request's Authorization."""

    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"")
    seen: list[str | None] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        status, headers, body = self.answer
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def loopback_server(answer: tuple[int, dict[str, str], bytes]):
    handler = type("Handler", (Recorder,), {"answer": answer, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_not_followed_with_the_key(home, monkeypatch, capsys):
    with loopback_server((200, {}, b"{}")) as (elsewhere, seen_elsewhere):
        with loopback_server((307, {"Location": f"{elsewhere}/api/jobs"}, b"")) as (gateway, seen):
            monkeypatch.setenv(config.URL_VAR, gateway)
            monkeypatch.setenv(config.KEY_VAR, "llmct_secret")
            assert app.main(["jobs", "list"]) == Exit.UNREACHABLE
    assert seen == ["Bearer llmct_secret"] and seen_elsewhere == [], "the key went nowhere else"
    assert "redirects (HTTP 307)" in capsys.readouterr().err


def test_an_answer_that_is_not_the_gateways_json_exits_3(home, monkeypatch, capsys):
    with loopback_server((200, {"Content-Type": "text/html"}, b"<html>router login</html>")) as (url, _):
        monkeypatch.setenv(config.URL_VAR, url)
        monkeypatch.setenv(config.KEY_VAR, "k")
        assert app.main(["jobs", "show", "job_1"]) == Exit.UNREACHABLE
    assert "not the gateway's JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("job_id", "member", "name"),
    [("job_1", None, "job_1.zip"), ("job_1", "checkpoint-2/adapter.bin", "adapter.bin"),
     ("job_1", "../../../etc/passwd", "passwd")],
)  # fmt: skip
def test_a_download_is_saved_under_a_name_chosen_here(job_id, member, name):
    assert transfer.saved_name(job_id, member) == name


@pytest.mark.parametrize(("job_id", "member"), [("a/b", None), ("job_1", ".."), ("job_1", "a/..")])
def test_a_download_without_a_safe_name_is_a_usage_error(job_id, member):
    with pytest.raises(CliError) as refused:
        transfer.saved_name(job_id, member)
    assert refused.value.code == Exit.USAGE
