"""`llmct download`: a job's outputs (the zip of them all, or one file), resumed with a Range request after a break,
in this run or the next (the part so far and its ETag are kept beside the target)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from .errors import CliError, Exit, api_error, unreachable
from .http import Gateway, segment
from .output import say

ATTEMPTS = 5
CHUNK = 1 << 20


class Part:
    """A download under way: `<target>.part` and the ETag of what it holds (`<target>.part.etag`)."""

    def __init__(self, target: Path):
        self.target = target
        self.data = target.with_name(target.name + ".part")
        self.tag = target.with_name(target.name + ".part.etag")

    def resume_headers(self) -> dict[str, str]:
        """Range and If-Range to go on from what is there; none when nothing (or nothing known) is."""
        if not (self.data.exists() and self.tag.exists()):
            return {}
        return {"Range": f"bytes={self.data.stat().st_size}-", "If-Range": self.tag.read_text().strip()}

    def done(self) -> None:
        self.data.replace(self.target)
        self.tag.unlink(missing_ok=True)


def complete_at(response: httpx.Response) -> int | None:
    """The size a 416 says the file has (`Content-Range: bytes */<size>`)."""
    total = response.headers.get("content-range", "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


@contextlib.contextmanager
def bar(name: str) -> Iterator[Progress | None]:
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(
        TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=Console(stderr=True)
    ) as progress:
        yield progress


def fetch_once(gateway: Gateway, path: str, part: Part, progress: Progress | None) -> bool:
    """One request, appended to (206) or replacing (200) the part; whether the file is whole. A broken connection
    raises httpx.TransportError, with what came kept."""
    headers = part.resume_headers()
    with gateway.http.stream("GET", path, headers=headers) as answer:
        if answer.status_code == 416 and headers:
            answer.read()
            if complete_at(answer) == part.data.stat().st_size:
                return True
            part.tag.unlink(missing_ok=True)  # not what the server has: start again
            return False
        if answer.status_code >= 400:
            answer.read()
            raise api_error(answer.status_code, answer.content)
        resumed = answer.status_code == 206
        part.tag.write_text(answer.headers.get("etag", ""))
        have = part.data.stat().st_size if resumed else 0
        total = have + int(answer.headers.get("content-length", 0)) or None
        task = progress.add_task("", total=total, completed=have) if progress else None
        with part.data.open("ab" if resumed else "wb") as out:
            for chunk in answer.iter_bytes(CHUNK):
                out.write(chunk)
                if progress is not None and task is not None:
                    progress.advance(task, len(chunk))
    return True


def fetch(gateway: Gateway, path: str, target: Path) -> None:
    """Download `path` to `target`, resuming after breaks (ATTEMPTS in a row without progress)."""
    part = Part(target)
    with bar(target.name) as progress:
        for attempt in range(ATTEMPTS):
            try:
                if fetch_once(gateway, path, part, progress):
                    part.done()
                    return
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.ConnectError) or attempt == ATTEMPTS - 1:
                    raise unreachable(gateway.url, exc) from exc
                time.sleep(min(2**attempt, 10))
    raise CliError(f"{target} could not be completed: run the command again to go on", Exit.UNREACHABLE)


def saved_name(job_id: str, member: str | None) -> str:
    """The local file's name: chosen here, never from the answer (a gateway cannot write outside --out)."""
    name = PurePosixPath(member).name if member else f"{job_id}.zip"
    if name in ("", ".", "..") or "/" in name:
        raise CliError(f"no file name to save {member or job_id!r} as", Exit.USAGE)
    return name


@click.command()
@click.argument("job_id")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
@click.option("--file", "member", help="one file of the outputs, e.g. adapter_model.safetensors (default: all, zipped)")
def download(job_id: str, out: Path, member: str | None) -> None:
    """Download a job's outputs as <JOB_ID>.zip (or one file); run it again after a break to go on where it stopped.

    Prints the downloaded file's path."""
    path = f"/api/jobs/{segment(job_id)}/artifacts" + (f"/{quote(member)}" if member else "")
    out.mkdir(parents=True, exist_ok=True)
    target = out / saved_name(job_id, member)
    with Gateway.from_config() as gateway:
        fetch(gateway, path, target)
    say(f"downloaded {target} ({target.stat().st_size} bytes)")
    click.echo(str(target))
