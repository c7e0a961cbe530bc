"""The built web client at /, with client-side routes falling back to index.html."""

from __future__ import annotations

from pathlib import Path

from litestar import MediaType, Response, get
from litestar.response import File

from services.common.dependencies import Injected

from .settings import GatewaySettings

PLACEHOLDER = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LLM-Cloud-Trainer</title></head>
<body><h1>LLM-Cloud-Trainer</h1><p>The web client is not built yet: run <code>make web</code>.
The API is up: see <a href="/api/docs">/api/docs</a>.</p></body></html>"""


def _resolve(dist: Path, path: str) -> Path | None:
    """The file under dist for a URL path, never escaping dist."""
    candidate = (dist / path.lstrip("/")).resolve()
    if candidate.is_file() and candidate.is_relative_to(dist.resolve()):
        return candidate
    return None


# The client is one origin's own scripts and styles: nothing inline runs, nothing loads from elsewhere, no page
# frames it (clickjacking), no browser guesses a type (an uploaded file served as script), no URL leaks onwards.
# Styles may be inline: components set style attributes.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
FRAMING_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, **FRAMING_HEADERS}


@get(["/", "/{path:path}"], opt={"public": True}, include_in_schema=False)
async def web_client(settings: Injected[GatewaySettings], path: str = "/") -> Response:
    dist: Path = settings.web_dist
    if path.startswith("/api/"):
        return Response(
            {"error": {"code": "not_found", "message": f"no API route {path}", "field": None}},
            status_code=404,
            media_type=MediaType.JSON,
            headers=SECURITY_HEADERS,
        )
    found = _resolve(dist, path) or _resolve(dist, "index.html")
    if found is None:
        return Response(PLACEHOLDER, media_type=MediaType.HTML, headers=SECURITY_HEADERS)
    cache = "public, max-age=31536000, immutable" if "/assets/" in str(found) else "no-cache"
    return File(
        found,
        filename=found.name,
        content_disposition_type="inline",
        headers={"cache-control": cache, **SECURITY_HEADERS},
    )
