"""`llmct up`'s restart policy (llmct/supervise.py): a doubling wait up to a cap, back to the first after a process
stayed up, a plain line when one keeps failing, never a spin."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from llmct.supervise import RestartSettings, Supervisor, how_it_ended

pytestmark = pytest.mark.unit


@dataclass
class FakeChild:
    name: str = "scheduler"
    where: str = "/logs/scheduler.log"
    alive: bool = True
    launches: int = 0
    fails_to_launch: bool = False
    answering: bool = True
    exits: list[str] = field(default_factory=list)

    def ended(self) -> str | None:
        return None if self.alive else "exit code 1"

    def launch(self) -> None:
        self.launches += 1
        if self.fails_to_launch:
            raise RuntimeError("port taken")
        self.alive = True

    def answers(self) -> bool:
        return self.answering


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = RestartSettings(first_s=1, max_s=8, stable_s=60, burst=3)


def crash_and_restart(supervisor: Supervisor, child: FakeChild, clock: Clock, up_for: float) -> float:
    """Let the child run `up_for` seconds, die, and be restarted; returns the wait before its restart."""
    clock.now += up_for
    child.alive = False
    supervisor.tick()
    watch = supervisor.watches[0]
    assert watch.restart_at is not None
    wait = watch.restart_at - clock.now
    clock.now = watch.restart_at
    supervisor.tick()
    return wait


def test_the_wait_doubles_up_to_the_cap_and_resets_after_a_stable_run():
    child, clock, lines = FakeChild(), Clock(), []
    supervisor = Supervisor([child], SETTINGS, say=lines.append, clock=clock)
    waits = [crash_and_restart(supervisor, child, clock, up_for=2) for _ in range(6)]
    assert waits == [1, 2, 4, 8, 8, 8]
    assert child.launches == 6
    assert crash_and_restart(supervisor, child, clock, up_for=61) == 1, "stayed up past stable_s: first wait again"


def test_a_line_says_which_process_died_how_and_when_it_restarts_and_that_it_is_back():
    child, clock, lines = FakeChild(), Clock(), []
    supervisor = Supervisor([child], SETTINGS, say=lines.append, clock=clock)
    crash_and_restart(supervisor, child, clock, up_for=5)
    supervisor.tick()
    assert lines[0].startswith("scheduler died (exit code 1) after 5.0 s up; restarting it in 1 s, at ")
    assert lines[1] == "scheduler restarted"
    assert lines[2].startswith("scheduler is back")


def test_a_process_that_keeps_failing_is_said_to_and_retried_slowly_not_spun():
    child, clock, lines = FakeChild(fails_to_launch=True), Clock(), []
    supervisor = Supervisor([child], SETTINGS, say=lines.append, clock=clock)
    child.alive = False
    for _ in range(200):  # ten seconds of ticks every 50 ms
        supervisor.tick()
        clock.now += 0.05
    assert child.launches <= 3, "1 + 2 + 4 s of waits fit in 10 s: three tries, no spin"
    assert any("keeps failing: 3 exits in a row" in line and "/logs/scheduler.log" in line for line in lines), lines
    assert any("failed to start: port taken" in line for line in lines), lines


def test_a_signal_is_named():
    assert how_it_ended(-9) == "killed by SIGKILL"
    assert how_it_ended(3) == "exit code 3"
