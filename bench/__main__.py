"""`.venv/bin/python -m bench [NAME|all] [options]`; `-m bench NAME --help` lists a benchmark's options.

`all` runs dispatch, overhead and fanout with their defaults (docs/benchmarks.md). Any other module of
bench/ that has `add_arguments(parser)` and `main(args)` can be run by name too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from pathlib import Path

BENCHMARKS = ("dispatch", "overhead", "fanout")  # what `all` runs, in this order


def discover() -> dict[str, object]:
    """The core benchmarks, then every other bench/ module that looks like one (skipping any that fail to import,
    e.g. a GPU script that needs torch)."""
    found = {name: importlib.import_module(f"bench.{name}") for name in BENCHMARKS}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("_") or info.name in found:
            continue
        try:
            module = importlib.import_module(f"bench.{info.name}")
        except Exception:  # noqa: BLE001 - not a benchmark this interpreter can run
            continue
        if callable(getattr(module, "add_arguments", None)) and callable(getattr(module, "main", None)):
            found[info.name] = module
    return found


def main(argv: list[str] | None = None) -> int:
    modules = discover()
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="name")
    for name, module in modules.items():
        p = sub.add_parser(
            name,
            help=(module.__doc__ or name).strip().splitlines()[0],
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
    sub.add_parser("all", help=f"{', '.join(BENCHMARKS)} with their default options, one after the other")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("services.common.bus").setLevel(logging.ERROR)  # "NATS disconnected" on our own drains
    if args.name in (None, "all"):
        for name in BENCHMARKS:
            defaults = argparse.ArgumentParser()
            modules[name].add_arguments(defaults)
            print(f"=== bench {name} ===", flush=True)
            modules[name].main(defaults.parse_args([]))
    else:
        print(f"=== bench {args.name} ===", flush=True)
        modules[args.name].main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
