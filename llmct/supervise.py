"""`llmct up` keeps what it started running: a process that dies is started again after a backoff, as systemd's
`Restart=on-failure` with `RestartSec` doubling would, and a line says which one died, how, and when it restarts.

A process that keeps dying soon after its start (a bad setting, a port taken) is not given up: after
`LLMCT_RESTART_BURST` quick exits in a row a line says so plainly, and it is tried again every `LLMCT_RESTART_MAX_S`
(the cause is often outside it, and goes away without a person: a port freed, a disk cleaned). One that stayed up
`LLMCT_RESTART_STABLE_S` starts over from the first delay.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from services.common.settings import env


@dataclass(frozen=True, kw_only=True)
class RestartSettings:
    """How `llmct up` restarts a process that died."""

    first_s: float = env("LLMCT_RESTART_FIRST_S", 1.0, doc="seconds `llmct up` waits before restarting a process")
    max_s: float = env(
        "LLMCT_RESTART_MAX_S", 30.0, doc="the longest wait between restarts (the wait doubles from the first)"
    )
    stable_s: float = env(
        "LLMCT_RESTART_STABLE_S",
        60.0,
        doc="seconds a restarted process must stay up for its next failure to start again from the first wait",
    )
    burst: int = env(
        "LLMCT_RESTART_BURST",
        5,
        doc="quick exits in a row after which `llmct up` says a process keeps failing (it keeps retrying slowly)",
    )


class Child(Protocol):
    """A process `llmct up` watches."""

    @property
    def name(self) -> str:
        """What the lines call it."""
        ...

    def ended(self) -> str | None:
        """None while it runs, else how it ended ("exit code 1", "killed by SIGKILL")."""
        ...

    def launch(self) -> None:
        """Start it again, without waiting for it to be ready."""
        ...

    def answers(self) -> bool:
        """Whether it is ready again (its /health answers)."""
        ...

    @property
    def where(self) -> str:
        """Where its output goes (said when it keeps failing)."""
        ...


def how_it_ended(returncode: int) -> str:
    """A returncode as words: a negative one is the signal that killed it."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Watch:
    """One child and where its restarts stand."""

    child: Child
    started_at: float
    delay: float
    quick_failures: int = 0
    restart_at: float | None = None
    back: bool = True  # said that it answers again since its last restart


def _say(line: str) -> None:
    print(f"{datetime.now().astimezone():%H:%M:%S} {line}", file=sys.stderr, flush=True)


class Supervisor:
    """Restart each child that dies, with a doubling backoff; call `tick()` every fraction of a second."""

    def __init__(
        self,
        children: Sequence[Child],
        settings: RestartSettings,
        *,
        say: Callable[[str], None] = _say,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self._say, self._clock = settings, say, clock
        now = clock()
        self.watches = [Watch(child=child, started_at=now, delay=settings.first_s) for child in children]

    def tick(self) -> None:
        """Notice what died, restart what is due, and say which restarted process answers again."""
        now = self._clock()
        for watch in self.watches:
            if watch.restart_at is not None:
                if now >= watch.restart_at:
                    self._restart(watch, now)
                continue
            how = watch.child.ended()
            if how is not None:
                self._schedule(watch, how, now)
            elif not watch.back and watch.child.answers():
                watch.back = True
                self._say(f"{watch.child.name} is back: it answers again ({now - watch.started_at:.1f} s after start)")

    def _schedule(self, watch: Watch, how: str, now: float) -> None:
        lived = now - watch.started_at
        if lived >= self.settings.stable_s:
            watch.quick_failures, watch.delay = 0, self.settings.first_s
        watch.quick_failures += 1
        delay = watch.delay
        watch.delay = min(watch.delay * 2, self.settings.max_s)
        watch.restart_at = now + delay
        at = datetime.now().astimezone() + timedelta(seconds=delay)
        name = watch.child.name
        self._say(f"{name} died ({how}) after {lived:.1f} s up; restarting it in {delay:.0f} s, at {at:%H:%M:%S}")
        if watch.quick_failures >= self.settings.burst:
            self._say(
                f"{name} keeps failing: {watch.quick_failures} exits in a row, each within "
                f"{self.settings.stable_s:.0f} s of its start; see {watch.child.where}. Retrying every "
                f"{self.settings.max_s:.0f} s until it stays up"
            )

    def _restart(self, watch: Watch, now: float) -> None:
        watch.restart_at, watch.started_at, watch.back = None, now, False
        try:
            watch.child.launch()
        except Exception as exc:  # noqa: BLE001 - a start that fails counts as one more failure
            self._schedule(watch, f"failed to start: {exc}", now)
            return
        self._say(f"{watch.child.name} restarted")
