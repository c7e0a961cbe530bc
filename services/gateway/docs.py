"""One OpenAPI document for the whole public API, merged from the services, and a browsable page."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from litestar import MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from services.common.app import VERSION
from services.common.dependencies import Injected
from services.common.settings import Settings

from .proxy import ROUTES, V1_ROUTES
from .web import FRAMING_HEADERS

CACHE_S = 30.0

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LLM-Cloud-Trainer API</title>
<link rel="stylesheet" href="/api/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/api/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#ui", persistAuthorization: true});</script>
</body></html>"""


# What every error actually looks like (services/common/errors.py; /v1 keeps OpenAI's shape, services/gateway/chat.py).
# Litestar documents its own default instead ({status_code, detail, extra}), which no route sends.
ERROR_SCHEMAS = {
    "ErrorEnvelope": {
        "type": "object",
        "description": "Every error of the API: a stable `code`, a `message` that says what to fix, and the `field` "
        "(a dotted path in the body, or a parameter's name) it is about, when there is one.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string", "examples": ["not_found", "invalid_field", "unauthorized"]},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                },
            }
        },
    },
    "OpenAIError": {
        "type": "object",
        "description": "An error of the OpenAI-compatible surface, in OpenAI's shape.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
}
ERROR_RESPONSES = {
    "4XX": "Refused: `error.code` says why, `error.message` what to fix, `error.field` which input",
    "502": "`outcome_unknown`: the service went away after it received the request and before it answered; the "
    "request may have been carried out. Look before sending it again, or send it with an Idempotency-Key",
    "503": "A service or the database is not reachable right now, or the model is not ready: retry shortly (after "
    "Retry-After); a retry cannot do anything twice",
}
# The gateway's own OpenAI-compatible surface forwards nothing over HTTP: it never answers 502 (the /v1 routes
# it forwards, V1_ROUTES, may).
OPENAI_ERRORS = ("4XX", "503")


def _forwarded(path: str) -> bool:
    return any(path == f"/v1/{prefix}" or path.startswith(f"/v1/{prefix}/") for prefix in V1_ROUTES)


def _error_responses(path: str) -> dict:
    openai = path.startswith("/v1/")
    component = "OpenAIError" if openai else "ErrorEnvelope"
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}
    return {
        status: {"description": text, "content": content}
        for status, text in ERROR_RESPONSES.items()
        if not openai or status in OPENAI_ERRORS or _forwarded(path)
    }


def with_real_errors(path: str, item: dict) -> dict:
    """The path's operations with their error responses as they are sent, in place of Litestar's default."""
    operations = {}
    for method, operation in item.items():
        if isinstance(operation, dict) and "responses" in operation:
            kept = {k: v for k, v in operation["responses"].items() if not k.startswith(("4", "5"))}
            operation = {**operation, "responses": {**kept, **_error_responses(path)}}
        operations[method] = operation
    return operations


async def _service_schema(client: httpx.AsyncClient, base_url: str) -> dict:
    try:
        response = await client.get(f"{base_url}/schema/openapi.json", timeout=5)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError):
        return {}


def merge_schemas(schemas: list[dict]) -> dict:
    """Public paths and components of every service in one document. A component name two services define
    differently (each its own `RegisterRequest`) is given to neither: each takes its service's name in front
    (`AuthRegisterRequest`, `DatasetsRegisterRequest`), whatever order the services come in."""
    merged = {
        "openapi": "3.1.0",
        "info": {
            "title": "LLM-Cloud-Trainer API",
            "version": VERSION,
            "description": "Public REST API. Authenticate with `Authorization: Bearer <token or API key>`.",
        },
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
    clashing = _clashing_names(schemas)
    for schema in schemas:
        schema = _prefixed(schema, clashing)
        for path, item in schema.get("paths", {}).items():
            if path.startswith(("/api/", "/v1/")):
                merged["paths"][path] = with_real_errors(path, item)
        merged["components"]["schemas"].update(schema.get("components", {}).get("schemas", {}))
    merged["components"]["schemas"].update(ERROR_SCHEMAS)
    return merged


def _components(schema: dict) -> dict:
    return schema.get("components", {}).get("schemas", {})


def _clashing_names(schemas: list[dict]) -> set[str]:
    seen: dict[str, str] = {}
    clashing = set()
    for schema in schemas:
        for name, definition in _components(schema).items():
            text = json.dumps(definition, sort_keys=True)
            if seen.setdefault(name, text) != text:
                clashing.add(name)
    return clashing


def _prefixed(schema: dict, clashing: set[str]) -> dict:
    """The service's document with its clashing components (and every reference to them) renamed."""
    names = clashing & set(_components(schema))
    if not names:
        return schema
    service = schema.get("info", {}).get("title", "").rsplit(" ", 1)[-1].capitalize()
    text = json.dumps(schema)
    for name in names:
        text = text.replace(f'"#/components/schemas/{name}"', f'"#/components/schemas/{service}{name}"')
    renamed = json.loads(text)
    components = _components(renamed)
    for name in names:
        components[f"{service}{name}"] = components.pop(name)
    return renamed


@get("/api/openapi.json", opt={"public": True}, include_in_schema=False)
async def openapi_document(
    request: Request, state: State, http: httpx.AsyncClient, settings: Injected[Settings]
) -> Response:
    cached = state.get("openapi_cache")
    if not cached or time.monotonic() - cached[0] > CACHE_S:
        services = sorted(set(ROUTES.values()))
        schemas = await asyncio.gather(*(_service_schema(http, settings.service_url(s)) for s in services))
        own = request.app.openapi_schema.to_schema()  # the gateway's own routes: chat and the OpenAI surface
        cached = (time.monotonic(), merge_schemas([*schemas, own]))
        if all(schemas):  # never cache a document with a service missing
            state.openapi_cache = cached
    return Response(cached[1], media_type=MediaType.JSON)


@get("/api/docs", opt={"public": True}, include_in_schema=False, media_type=MediaType.HTML)
async def docs_page(request: Request) -> Response:
    # Swagger UI starts from an inline script: no script policy here, but no framing or sniffing either.
    return Response(DOCS_PAGE, media_type=MediaType.HTML, headers=FRAMING_HEADERS)


DOCS_STATIC = create_static_files_router(
    path="/api/docs/static", directories=[swagger_ui_path], opt={"public": True}, include_in_schema=False
)
