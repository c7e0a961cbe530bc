"""The gateway's merged OpenAPI document: a component name two services define differently keeps both
definitions under prefixed names, whatever order the services answer in, and every reference resolves."""

import json
import re
from pathlib import Path

import pytest

from services.gateway.docs import merge_schemas
from services.gateway.proxy import V1_ROUTES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def service(name: str, path: str, register: dict) -> dict:
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/RegisterRequest"}}}}
    return {
        "info": {"title": f"LLM-Cloud-Trainer {name}"},
        "paths": {path: {"post": {"requestBody": body}}},
        "components": {"schemas": {"RegisterRequest": register, "Error": {"type": "object"}}},
    }


AUTH = service("auth", "/api/auth/register", {"properties": {"username": {"type": "string"}}})
DATASETS = service("datasets", "/api/datasets/register", {"properties": {"hub": {"type": "string"}}})


def ref_of(document: dict, path: str) -> str:
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]


def test_clashing_components_keep_both_definitions_in_any_order():
    for order in ([AUTH, DATASETS], [DATASETS, AUTH]):
        merged = merge_schemas(order)
        components = merged["components"]["schemas"]
        assert "RegisterRequest" not in components
        assert ref_of(merged, "/api/auth/register") == "#/components/schemas/AuthRegisterRequest"
        assert ref_of(merged, "/api/datasets/register") == "#/components/schemas/DatasetsRegisterRequest"
        assert "username" in components["AuthRegisterRequest"]["properties"]
        assert "hub" in components["DatasetsRegisterRequest"]["properties"]
        assert "Error" in components, "the same definition twice is one component, not renamed"
    assert "RegisterRequest" in AUTH["components"]["schemas"], "the services' documents are left as they were"


def test_every_reference_in_the_published_snapshot_resolves():
    document = json.loads((ROOT / "web" / "openapi.json").read_text())
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs and refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])


FORWARDED_V1 = tuple(f"/v1/{prefix}" for prefix in V1_ROUTES)


def test_every_operation_states_the_error_envelope_it_really_sends():
    document = json.loads((ROOT / "web" / "openapi.json").read_text())
    assert '"status_code"' not in json.dumps(document), "Litestar's default error body is sent by no route"
    for path, item in document["paths"].items():
        expected = "OpenAIError" if path.startswith("/v1/") else "ErrorEnvelope"
        for method, operation in item.items():
            errors = {code: r for code, r in operation.get("responses", {}).items() if code[0] in "45"}
            own_v1 = path.startswith("/v1/") and not path.startswith(FORWARDED_V1)  # forwarded ones may say 502
            assert set(errors) == ({"4XX", "503"} if own_v1 else {"4XX", "502", "503"}), (method, path, errors)
            refs = {r["content"]["application/json"]["schema"]["$ref"] for r in errors.values()}
            assert refs == {f"#/components/schemas/{expected}"}, (method, path)
    envelope = document["components"]["schemas"]["ErrorEnvelope"]["properties"]["error"]
    assert envelope["required"] == ["code", "message", "field"]
