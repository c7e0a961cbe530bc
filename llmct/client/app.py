"""The user commands' root: `llmct login|logout|datasets|jobs|download|deploy|chat` (llmct/cli.py hands these words
here), and the one place errors become exit codes."""

from __future__ import annotations

import sys

import click

from .account import login, logout
from .datasets import datasets
from .errors import CliError, Exit
from .jobs import jobs
from .output import say
from .serving import chat, deploy
from .transfer import download

EXIT_CODES = """Exit codes: 0 done; 1 the gateway refused the request (its message and field are printed); 2 a usage
error; 3 the gateway could not be reached or did not answer (502/503/504), or no login / a refused credential;
4 a job or deployment waited for ended failed, cancelled or stopped; 130 interrupted."""


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """LLM-Cloud-Trainer's user commands, against a gateway (`llmct login` first; docs/cli.md)."""


for command in (login, logout, datasets, jobs, download, deploy, chat):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Run one user command; its exit code (never a traceback for an error a user can meet)."""
    try:
        cli.main(args=argv, prog_name="llmct", standalone_mode=False)
    except CliError as exc:
        say(f"error: {exc.message}")
        return int(exc.code)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        exc.show()
        return int(Exit.USAGE)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        print(file=sys.stderr)
        return int(Exit.INTERRUPTED)
    return int(Exit.OK)


if __name__ == "__main__":
    sys.exit(main())
