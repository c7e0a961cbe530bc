"""How a followed log is shown: plain lines for pipes, JSON lines for scripts, and for a terminal the lines above a
progress bar of steps and loss."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from .output import clean


def line_text(line: dict) -> str:
    return str(line.get("text", "")).rstrip("\r\n")


def attempt_rule(attempt: int) -> str:
    return f"── attempt {attempt} ──"


def notice_text(notice: dict) -> str:
    reason = f" ({notice['reason']})" if notice.get("reason") else ""
    message = f": {notice['message']}" if notice.get("message") else ""
    return f"── the job's agent lost it{reason}{message}; it is {notice.get('state')} ──"


class PlainPrinter:
    """Lines as the job wrote them, nothing else on stdout (a pipe, a file)."""

    def __init__(self) -> None:
        self.attempt: int | None = None

    def line(self, line: dict, attempt: int) -> None:
        if self.attempt is not None and attempt != self.attempt:
            print(attempt_rule(attempt), file=sys.stderr)
        self.attempt = attempt
        sys.stdout.write(line_text(line) + "\n")
        sys.stdout.flush()

    def notice(self, notice: dict) -> None:
        print(clean(notice_text(notice)), file=sys.stderr)

    def progress(self, state: str, progress: dict | None) -> None:
        pass

    def close(self) -> None:
        pass


class JsonPrinter(PlainPrinter):
    """One JSON object a line: {seq, stream, at, text, attempt}, and {"notice": ...}."""

    def line(self, line: dict, attempt: int) -> None:
        sys.stdout.write(json.dumps({**line, "attempt": attempt}, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def notice(self, notice: dict) -> None:
        sys.stdout.write(json.dumps({"notice": notice}, ensure_ascii=False) + "\n")


class BarPrinter(PlainPrinter):
    """For a terminal: the log scrolls above a bar of the job's state, steps, loss and time left."""

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=Console(highlight=False),
            transient=False,
        )
        self.task = self.bar.add_task(f"{job_id} …", total=None, loss="-")
        self.job_id = job_id
        self.bar.start()

    def line(self, line: dict, attempt: int) -> None:
        if self.attempt is not None and attempt != self.attempt:
            self.bar.console.print(Text(attempt_rule(attempt), style="yellow"))
        self.attempt = attempt
        # What a terminal would show of a line a progress bar rewrote with \r; colours kept, other escapes dropped.
        shown = Text.from_ansi(line_text(line).rsplit("\r", 1)[-1])
        if line.get("stream") == "system":
            shown.stylize("cyan")
        self.bar.console.print(shown)

    def notice(self, notice: dict) -> None:
        self.bar.console.print(Text(clean(notice_text(notice)), style="yellow"))

    def progress(self, state: str, progress: dict | None) -> None:
        update: dict = {"description": f"{self.job_id} {clean(state)}"}
        if progress:
            update["completed"] = progress.get("step") or 0
            update["total"] = progress.get("total_steps") or None
            loss = progress.get("loss")
            update["loss"] = f"{loss:.4f}" if isinstance(loss, (int, float)) else "-"
        self.bar.update(self.task, **update)

    def close(self) -> None:
        self.bar.stop()
