"""Write web/openapi.json: the gateway's merged OpenAPI document, the source of src/api/schema.d.ts.

    .venv/bin/python web/scripts/openapi_snapshot.py              # built in-process from the service apps
    .venv/bin/python web/scripts/openapi_snapshot.py --from URL   # fetched from a running gateway's /api/openapi.json
    .venv/bin/python web/scripts/openapi_snapshot.py --check      # exit 1 when the snapshot differs

In-process needs no database or bus: nothing connects when an app is built (only a secret must be set).
Then `cd web && npm run gen:api` regenerates the TypeScript types from the snapshot.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "web" / "openapi.json"
SERVICES = ("auth", "scheduler", "datasets", "registry", "gateway")  # the gateway last: its own routes (chat, /v1)


def built_in_process() -> dict:
    """The document the gateway would serve, merged from the service apps built here."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("LLMCT_SECRET_KEY", "openapi-snapshot-" + "x" * 32)
    from services.gateway.docs import merge_schemas

    schemas = [importlib.import_module(f"services.{name}.app").create_app().openapi_schema.to_schema()
               for name in SERVICES]
    return merge_schemas(schemas)


def fetched(url: str) -> dict:
    import httpx

    response = httpx.get(url.rstrip("/") + "/api/openapi.json", timeout=30)
    response.raise_for_status()
    return response.json()


def render(document: dict) -> str:
    """Stable text: sorted keys, so a diff shows only real changes. The version is left out (it moves alone)."""
    document = {**document, "info": {k: v for k, v in document.get("info", {}).items() if k != "version"}}
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="url", help="a running gateway, e.g. http://127.0.0.1:8080")
    parser.add_argument("--check", action="store_true", help="compare with the snapshot instead of writing it")
    args = parser.parse_args()
    text = render(fetched(args.url) if args.url else built_in_process())
    if args.check:
        if SNAPSHOT.is_file() and SNAPSHOT.read_text(encoding="utf-8") == text:
            print(f"{SNAPSHOT.relative_to(ROOT)} is up to date")
            return 0
        print(f"{SNAPSHOT.relative_to(ROOT)} is out of date: run `.venv/bin/python web/scripts/openapi_snapshot.py` "
              "then `cd web && npm run gen:api`", file=sys.stderr)
        return 1
    SNAPSHOT.write_text(text, encoding="utf-8")
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
