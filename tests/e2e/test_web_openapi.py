"""The web client's API types are generated from web/openapi.json: that snapshot must be the document the
gateway serves, or the types (and the form's limits checked against it) describe an API that is gone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "web" / "scripts" / "openapi_snapshot.py"
FIX = (
    "run `.venv/bin/python web/scripts/openapi_snapshot.py && (cd web && npm run gen:api)` "
    "and commit web/openapi.json and web/src/api/schema.d.ts"
)


def snapshot_module():
    spec = importlib.util.spec_from_file_location("openapi_snapshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_snapshot_is_the_gateways_document(gw):
    r = await gw.get("/api/openapi.json")
    assert r.status_code == 200
    live = json.loads(snapshot_module().render(r.json()))
    committed = json.loads((ROOT / "web" / "openapi.json").read_text(encoding="utf-8"))
    missing = sorted(set(live["paths"]) - set(committed["paths"]))
    gone = sorted(set(committed["paths"]) - set(live["paths"]))
    assert (missing, gone) == ([], []), f"paths added {missing}, removed {gone}: {FIX}"
    changed = sorted(
        name
        for name, schema in live["components"]["schemas"].items()
        if committed["components"]["schemas"].get(name) != schema
    )
    assert not changed, f"schemas changed: {changed}: {FIX}"
    assert live == committed, f"the document changed: {FIX}"
