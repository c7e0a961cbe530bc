"""Run `llmct <args>` under cProfile with a CPU-time clock: `python -m bench._cpuprofile STATS_PATH service NAME`.

`python -m cProfile` times with the wall clock, so in an asyncio service the time a coroutine waits (its awaits
resumed later) lands on whichever frames the profiler sees around the event loop's wait. With
`time.process_time` a frame is charged only the CPU it used: what the CPU per job is made of. Stats are written
when the service stops (SIGINT, as ProfiledService stops it)."""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    stats_path = sys.argv[1]
    sys.argv = ["llmct", *sys.argv[2:]]
    profile = cProfile.Profile(time.process_time)
    try:
        profile.runcall(runpy.run_module, "llmct.cli", run_name="__main__")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        profile.dump_stats(stats_path)


if __name__ == "__main__":
    main()
