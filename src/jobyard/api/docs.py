"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served from files in the package.

The pages and the two viewers are vendored under ``api/static/`` (versions and
licences in docs/api.md), so they work offline and fetch nothing from another host;
their Content-Security-Policy says so to the browser too. They are open without a
token, like ``/api/v1/openapi.json``: the document describes the API, it holds no
data, and "Authorize" in Swagger UI takes the token that calls then send.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).with_name("static")

#: Path served -> (file under ``static/``, media type).
ASSETS: dict[str, tuple[str, str]] = {
    "/docs": ("docs.html", "text/html; charset=utf-8"),
    "/redoc": ("redoc.html", "text/html; charset=utf-8"),
    "/docs/swagger-ui.css": ("swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
    "/docs/swagger-ui-bundle.js": (
        "swagger-ui/swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
    ),
    "/docs/swagger-init.js": ("swagger-init.js", "text/javascript; charset=utf-8"),
    "/docs/favicon.png": ("swagger-ui/favicon-32x32.png", "image/png"),
    "/redoc/redoc.standalone.js": ("redoc/redoc.standalone.js", "text/javascript; charset=utf-8"),
}

#: What the pages may load: their own host only. Inline styles are needed by both viewers
#: (styled components, style attributes); ReDoc runs its search in a ``blob:`` worker.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


def _asset_route(path: str, filename: str, media_type: str) -> None:
    file = STATIC / filename
    # The pages change with the server's version; the big bundles may be cached a day.
    cache = "no-cache" if media_type.startswith("text/html") else "public, max-age=86400"

    async def serve() -> FileResponse:
        return FileResponse(
            file,
            media_type=media_type,
            headers={
                "Cache-Control": cache,
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff",
            },
        )

    serve.__doc__ = f"The vendored file {filename}."
    router.add_api_route(path, serve, methods=["GET"], name=f"docs_asset:{path}")


for _path, (_file, _media) in ASSETS.items():
    _asset_route(_path, _file, _media)
