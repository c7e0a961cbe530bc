"""chaos: the chaos test's soak, on demand: more jobs and more rounds of faults than the suite's bounded run.

Runs `tests/e2e/test_chaos.py` (a 3-node NATS cluster, two schedulers, two gateways, two agents; kill -9 in turn a
scheduler, a gateway, an agent, the JOBS stream leader's node and Postgres, each back 3 s later) with
LLMCT_CHAOS_JOBS jobs and LLMCT_CHAOS_ROUNDS rounds, and prints the test's figures (jobs, states, re-queues, log
lines checked, client answers, seconds to healthy after each fault). Every check of the test holds, as in the suite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ._infra import write_results

ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=150, help="tiny jobs submitted (the suite runs 30)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the five faults (the suite runs 1)")


def main(args: argparse.Namespace) -> dict:
    env = {**os.environ, "LLMCT_CHAOS_JOBS": str(args.jobs), "LLMCT_CHAOS_ROUNDS": str(args.rounds)}
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/e2e/test_chaos.py"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    figures = [line for line in run.stdout.splitlines() if line.startswith(("chaos:", "client answers", "healthy"))]
    print("\n".join(figures) or run.stdout[-4000:], flush=True)
    results = {"jobs": args.jobs, "rounds": args.rounds, "passed": run.returncode == 0, "figures": figures}
    if run.returncode != 0:
        print(run.stdout[-6000:], run.stderr[-2000:], sep="\n", file=sys.stderr)
    write_results("chaos", results)
    return results
