"""`.venv/bin/python -m bench [dispatch|overhead|fanout|all] [options]`; `-m bench NAME --help` lists options."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

BENCHMARKS = ("dispatch", "overhead", "fanout")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="name")
    for name in BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0],
                           description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
    sub.add_parser("all", help="every benchmark with its default options, one after the other")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = BENCHMARKS if args.name in (None, "all") else (args.name,)
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if args.name in (None, "all"):
            p = argparse.ArgumentParser()
            module.add_arguments(p)
            run_args = p.parse_args([])
        else:
            run_args = args
        print(f"=== bench {name} ===", flush=True)
        module.main(run_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
