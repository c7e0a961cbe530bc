"""`llmct jobs submit|list|show|logs|cancel|retry|resume`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from . import bodies
from .errors import CliError, Exit
from .follow import follow
from .http import Gateway, segment
from .output import clean, fields, print_json, say, table, when
from .printers import BarPrinter, JsonPrinter, PlainPrinter

STATES = ("pending", "dispatched", "running", "succeeded", "failed", "cancelled")
KINDS = ("train", "eval", "export", "deploy")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print the API's JSON")


def progress_text(job: dict) -> str:
    progress = job.get("progress") or {}
    if not progress.get("total_steps"):
        return "-"
    loss = progress.get("loss")
    return f"{progress.get('step', 0)}/{progress['total_steps']}" + (f" loss {loss:.4f}" if loss is not None else "")


def tracking_text(runs: list[dict] | None) -> str | None:
    """Where the job reports its experiment: each tracker with its run's link, or where its files are."""
    parts = []
    for run in runs or []:
        where = run.get("url") or (f"outputs/{run['folder']}/" if run.get("folder") else run.get("run_id") or "")
        parts.append(f"{run['kind']} {where}".strip())
    return "; ".join(parts) or None


def metrics_text(metrics: dict | None) -> str | None:
    if not metrics:
        return None
    return ", ".join(
        f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}" for name, value in metrics.items()
    )


def model_of(job: dict) -> str | None:
    return job.get("base_model") or (job.get("request") or {}).get("model")


COLUMNS = [
    ("ID", lambda j: j["id"]),
    ("KIND", lambda j: j["kind"]),
    ("STATE", lambda j: j["state"]),
    ("MODEL", model_of),
    ("PROGRESS", progress_text),
    ("AGENT", lambda j: j.get("agent_id")),
    ("CREATED", lambda j: when(j.get("created_at"))),
    ("REASON", lambda j: j.get("reason") or j.get("wait_reason")),
]


@click.group()
def jobs() -> None:
    """Training, evaluation and export jobs."""


@jobs.command()
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(("train", "eval", "export")), help="default: train")
@click.option("--base-model", help="the model to train (train)")
@click.option("--model", help="the model to evaluate or export (eval, export)")
@click.option("--dataset", "datasets", multiple=True, help="a dataset's name (repeat for several)")
@click.option("--stage", type=click.Choice(("pt", "sft", "rm", "dpo", "kto")))
@click.option("--finetuning-type", type=click.Choice(("lora", "qlora", "full", "freeze")))
@click.option("--max-steps", type=int)
@click.option("--epochs", type=float, help="num_train_epochs")
@click.option("--learning-rate", type=float)
@click.option("--lora-rank", type=int)
@click.option("--batch-size", type=int, help="per_device_train_batch_size")
@click.option("--cutoff-len", type=int)
@click.option("--template")
@click.option("--gpus", type=int, help="gpu_count (0: on a CPU)")
@click.option("--priority", type=int)
@click.option("--set", "settings", multiple=True, metavar="FIELD=VALUE", help="any other field (a.b=v: nested)")
@click.option("--dry-run", is_flag=True, help="print the YAML the job would run, queue nothing")
@JSON_OPTION
def submit(
    file: Path | None, datasets: tuple[str, ...], settings: tuple[str, ...], dry_run: bool, as_json: bool, **flags
) -> None:
    """Submit a job: FILE (YAML: the body of POST /api/jobs) and/or flags (flags win over the file).

    Prints the new job's id; with --dry-run, the exact LLaMA-Factory YAML it would run."""
    body = bodies.job_body(bodies.read_job_file(file) if file else {}, flags, datasets, settings)
    with Gateway.from_config() as gateway:
        answer = gateway.post("/api/jobs", json=body, params={"dry_run": "true"} if dry_run else None)
    if as_json:
        print_json(answer)
    elif dry_run:
        sys.stdout.write(answer["config_yaml"])
    else:
        say(f"submitted {answer['id']} ({answer['state']}); follow it with `llmct jobs logs -f {answer['id']}`")
        click.echo(answer["id"])


@jobs.command(name="list")
@click.option("--state", type=click.Choice(STATES))
@click.option("--kind", type=click.Choice(KINDS))
@click.option("--search", "-q", help="part of a job id or model name")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@JSON_OPTION
def list_jobs(state: str | None, kind: str | None, search: str | None, limit: int, as_json: bool) -> None:
    """Your jobs, newest first."""
    with Gateway.from_config() as gateway:
        items = gateway.pages("/api/jobs", {"state": state, "kind": kind, "q": search}, limit)
    if as_json:
        print_json(items)
    else:
        table(items, COLUMNS, "no jobs")


@jobs.command()
@click.argument("job_id")
@JSON_OPTION
def show(job_id: str, as_json: bool) -> None:
    """A job: its state, progress, reason and history."""
    with Gateway.from_config() as gateway:
        job = gateway.get(f"/api/jobs/{segment(job_id)}")
    if as_json:
        print_json(job)
        return
    fields(
        [
            ("id", job["id"]),
            ("kind", job["kind"]),
            ("state", job["state"]),
            ("model", model_of(job)),
            ("datasets", ", ".join((job.get("request") or {}).get("datasets") or []) or None),
            ("progress", progress_text(job)),
            ("agent", job.get("agent_id")),
            ("reason", job.get("reason") or job.get("wait_reason")),
            ("message", job.get("message")),
            ("metrics", metrics_text(job.get("metrics"))),
            ("tracking", tracking_text(job.get("tracking"))),
            ("resume from step", job.get("resume_step")),
            ("created", when(job.get("created_at"))),
            ("started", when(job.get("started_at"))),
            ("finished", when(job.get("finished_at"))),
        ]
    )
    history = [{**event, "at": when(event.get("at"))} for event in job.get("history") or []]
    if history:
        click.echo()
        table(
            history,
            [
                ("AT", lambda e: e["at"]),
                ("STATE", lambda e: e["state"]),
                ("REASON", lambda e: e.get("reason")),
                ("MESSAGE", lambda e: e.get("message")),
            ],
            "",
        )


@jobs.command()
@click.argument("job_id")
@click.option("--follow", "-f", "follow_live", is_flag=True, help="follow live until the job ends, with a progress bar")
@click.option("--json", "as_json", is_flag=True, help="with -f: one JSON object a line")
def logs(job_id: str, follow_live: bool, as_json: bool) -> None:
    """The job's log; -f follows it live until the job ends (exit 0 if it succeeded, 4 if not)."""
    with Gateway.from_config() as gateway:
        if not follow_live:
            with gateway.stream("GET", f"/api/jobs/{segment(job_id)}/log") as answer:
                for chunk in answer.iter_bytes():
                    sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            return
        printer = JsonPrinter() if as_json else BarPrinter(job_id) if sys.stdout.isatty() else PlainPrinter()
        try:
            ending = asyncio.run(follow(gateway, job_id, printer))
        finally:
            printer.close()
    if ending.state != "succeeded":
        why = " ".join(clean(part) for part in (ending.reason, ending.message) if part)
        raise CliError(f"job {job_id} {ending.state}" + (f": {why}" if why else ""), Exit.ENDED_BADLY)
    say(f"job {job_id} succeeded")


def state_change(action: str, summary: str):
    @click.argument("job_id")
    @JSON_OPTION
    def command(job_id: str, as_json: bool) -> None:
        with Gateway.from_config() as gateway:
            answer = gateway.post(f"/api/jobs/{segment(job_id)}/{action}")
        if as_json:
            print_json(answer)
        else:
            click.echo(f"{answer['id']} {answer['state']}")

    command.__doc__ = summary
    return jobs.command(name=action)(command)


state_change("cancel", "Cancel a job (a running one stops within seconds).")
state_change("retry", "Run a failed or cancelled job again from the start, with the same config.")
state_change("resume", "Continue a failed or cancelled training job from its last checkpoint.")
