"""`llmct`: bring the platform up, run one service, migrate, manage admins."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import logging
import signal
import sys

from services.common import redaction
from services.common.settings import SERVICE_NAMES, get_settings


def cmd_service(args: argparse.Namespace) -> int:
    """Run one service in this process until SIGTERM."""
    import uvicorn

    settings = get_settings()
    module = importlib.import_module(f"services.{args.name}.app")
    host = settings.public_host if args.name == "gateway" else settings.bind_host
    # A service may set more of the server (the gateway: a deadline on request headers).
    own_options = getattr(module, "server_options", None)
    app = module.create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=settings.ports[args.name],
            log_level=args.log_level,
            timeout_graceful_shutdown=10,
            proxy_headers=False,
            **(own_options(settings) if own_options else {}),
        )
    )
    # A start that waited for Postgres or NATS and then failed for good (a database not migrated) stops the
    # server, and the process exits 1 as it would have without waiting.
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    server.run()
    startup = app.state.get("startup")
    failed = not server.started or (startup is not None and startup.failure is not None)
    return 3 if failed else 0  # 3: uvicorn's own code for a start that failed


def cmd_migrate(_: argparse.Namespace) -> int:
    from services.common.store import head_revision, migrate

    migrate(get_settings().database_url)
    print(f"database is at {head_revision()}")
    return 0


def cmd_admin_create(args: argparse.Namespace) -> int:
    from services.auth.service import create_user
    from services.common.errors import ApiError
    from services.common.store import check_migrated, create_pool

    password = args.password or getpass.getpass("password for the new admin: ")

    async def create() -> None:
        pool = await create_pool(get_settings().database_url, attempts=1)
        try:
            await check_migrated(pool)
            await create_user(pool, username=args.username, password=password, role="admin")
        finally:
            await pool.close()

    try:
        asyncio.run(create())
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"admin {args.username} created")
    return 0


def cmd_make_tiny(args: argparse.Namespace) -> int:
    """Build the tiny model and datasets locally and register the model as a preset."""
    from .bootstrap import ensure_tiny_preset

    settings = get_settings()
    settings.storage.ensure()
    path = ensure_tiny_preset(settings.storage, settings.database_url, args.name, rebuild=True)
    print(f"preset {args.name} registered: {path}; datasets tiny_sft and tiny_pt in {settings.storage.data}")
    return 0


def cmd_nats_users(args: argparse.Namespace) -> int:
    """Print a nats-server authorization block: the services' user and one restricted user per agent."""
    import json
    import secrets

    from services.common.nats_auth import BadAgentId, authorization

    try:
        block = authorization(
            args.service_password or secrets.token_urlsafe(18),
            {agent: secrets.token_urlsafe(18) for agent in args.agent},
        )
    except BadAgentId as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(block, indent=2))
    return 0


def cmd_nats_sync_users(args: argparse.Namespace) -> int:
    """Write a production nats-server's users: the hand-kept block plus every joined agent; reload on change."""
    from pathlib import Path

    from services.common.bus import tls_context

    from .usersync import ConfigFile, UsersSync

    settings = get_settings()
    target = ConfigFile(
        base=Path(args.base), out=Path(args.out), pid_file=Path(args.pid_file) if args.pid_file else None
    )
    tls = tls_context(settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key)
    sync = UsersSync(
        settings.nats_url,
        settings.database_url,
        target.apply,
        every_s=args.every,
        tls=tls,
        user=settings.nats_user,
        password=settings.nats_password,
    )
    if not args.follow:
        changed = asyncio.run(sync.sync_once())
        print(f"{args.out}: {'written' if changed else 'unchanged'}")
        return 0

    async def follow() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await sync.run(stop)

    asyncio.run(follow())
    return 0


def cmd_agent_join(args: argparse.Namespace) -> int:
    from .agentjoin import JoinFailed, join

    try:
        token = sys.stdin.readline().strip() if args.token == "-" else args.token  # `-`: not in `ps` listings
        return join(args.gateway_url, token, args.agent_id, args.base, start=not args.no_start)
    except JoinFailed as exc:
        print(f"llmct agent join: {exc}", file=sys.stderr)
        return 2


def cmd_agent_start(args: argparse.Namespace) -> int:
    from .agentjoin import JoinFailed, start

    try:
        return start(args.base)
    except JoinFailed as exc:
        print(f"llmct agent start: {exc}", file=sys.stderr)
        return 2


def cmd_up(_: argparse.Namespace) -> int:
    from .launcher import run_up

    return run_up()


USER_HELP = {
    "login": "store a gateway's URL and an API key (user commands; `llmct login -h`)",
    "logout": "revoke the API key login made and forget the login",
    "datasets": "upload and list datasets on the gateway",
    "jobs": "submit, list, show, follow (logs -f), cancel, retry and resume jobs",
    "download": "download a job's outputs (resumable)",
    "deploy": "serve a model and wait until it is ready",
    "chat": "chat with a deployed model, streamed",
}
EXIT_CODES = """user commands exit 0 when done; 1 when the gateway refused the request (its message and field printed);
2 on a usage error; 3 when the gateway cannot be reached or there is no login (or the credential is refused); 4 when
a job or deployment waited for ended failed, cancelled or stopped (docs/cli.md)"""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="llmct",
        description="LLM-Cloud-Trainer: operator commands (up, service, migrate, admin, models, nats, agent) and user "
        "commands against a gateway (login, datasets, jobs, download, deploy, chat)",
        epilog=EXIT_CODES,
    )
    commands = root.add_subparsers(dest="command", required=True)
    for name, text in USER_HELP.items():  # listed here, run by llmct.client (main hands them over before parsing)
        commands.add_parser(name, help=text, add_help=False)
    up = commands.add_parser("up", help="start NATS, Postgres, every service and a local agent")
    up.set_defaults(func=cmd_up)
    service = commands.add_parser("service", help="run one service")
    service.add_argument("name", choices=SERVICE_NAMES)
    service.add_argument("--log-level", default="info")
    service.set_defaults(func=cmd_service)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    admin = commands.add_parser("admin", help="manage admins")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    create = admin_commands.add_parser("create", help="create an admin account")
    create.add_argument("--username", required=True)
    create.add_argument("--password", help="prompted for when omitted")
    create.set_defaults(func=cmd_admin_create)
    models = commands.add_parser("models", help="manage base models")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    tiny = models_commands.add_parser("make-tiny", help="build a tiny Llama locally and register it as a preset")
    tiny.add_argument("--name", default="tiny-llama")
    tiny.set_defaults(func=cmd_make_tiny)
    nats_cmd = commands.add_parser("nats", help="NATS users and permissions (docs/fleet.md)")
    nats_commands = nats_cmd.add_subparsers(dest="nats_command", required=True)
    users = nats_commands.add_parser("users", help="print an authorization block for nats-server, new passwords")
    users.add_argument("--agent", action="append", default=[], help="an agent id (repeat for each agent)")
    users.add_argument("--service-password", help="the services' password (generated when omitted)")
    users.set_defaults(func=cmd_nats_users)
    sync = nats_commands.add_parser(
        "sync-users", help="render joined agents' users into a nats-server config and reload it (deploy/README.md)"
    )
    sync.add_argument("--base", required=True, help="the hand-kept authorization block (JSON, as `users` prints)")
    sync.add_argument("--out", required=True, help="the file nats-server's config includes (written 0600)")
    sync.add_argument("--pid-file", help="nats-server's pid file: SIGHUP it when the users change")
    sync.add_argument("--follow", action="store_true", help="keep following changes (else sync once)")
    sync.add_argument("--every", type=float, default=30.0, help="seconds between periodic checks with --follow")
    sync.set_defaults(func=cmd_nats_sync_users)
    agent = commands.add_parser("agent", help="run this host's agent (docs/fleet.md)")
    agent_commands = agent.add_subparsers(dest="agent_command", required=True)
    join = agent_commands.add_parser("join", help="join the platform with an admin's join token and start the agent")
    join.add_argument("gateway_url", help="the platform's address, e.g. https://llm.example.com")
    join.add_argument("token", help="the join token an admin created on the fleet page (`-`: read it from stdin)")
    join.add_argument("--agent-id", help="this agent's id (default: the host name)")
    join.add_argument("--base", help="this host's storage folder (HOST_BASE_PATH); its state folder keeps the join")
    join.add_argument("--no-start", action="store_true", help="join and save the settings, start nothing")
    join.set_defaults(func=cmd_agent_join)
    start = agent_commands.add_parser("start", help="start the agent with the settings a join saved")
    start.add_argument("--base", help="this host's storage folder (HOST_BASE_PATH), as given to join")
    start.set_defaults(func=cmd_agent_start)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in USER_HELP:
        from .client.app import main as user_main

        return user_main(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin chatter buries the banner
    redaction.install()  # no log line of ours, uvicorn's or a library's carries a token, ticket or password
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # the store refusing to start, a port taken...: say it plainly
        from services.common.store import StoreNotMigrated

        if isinstance(exc, (StoreNotMigrated, RuntimeError)):
            print(f"llmct {args.command}: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
