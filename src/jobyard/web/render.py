"""Templates, the vendored static files, and the helpers pages are rendered with."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from jobyard import __version__
from jobyard.web.chart import bars
from jobyard.web.guard import PAGE_HEADERS

HERE = Path(__file__).parent
STATIC = HERE / "static"

#: Static files by URL name (``/static/<name>``) -> (file, media type). A closed list:
#: nothing else under the package is ever served.
STATIC_FILES: dict[str, tuple[Path, str]] = {
    "console.css": (STATIC / "console.css", "text/css; charset=utf-8"),
    "console.js": (STATIC / "console.js", "text/javascript; charset=utf-8"),
    "config.css": (STATIC / "config.css", "text/css; charset=utf-8"),
    "live.js": (STATIC / "live.js", "text/javascript; charset=utf-8"),
    "htmx.min.js": (STATIC / "vendor" / "htmx.min.js", "text/javascript; charset=utf-8"),
    "favicon.svg": (STATIC / "favicon.svg", "image/svg+xml"),
    "edit.css": (STATIC / "edit.css", "text/css; charset=utf-8"),
    "edit.js": (STATIC / "edit.js", "text/javascript; charset=utf-8"),
}
#: Static URLs carry the server's version (``?v=``), so they may be cached for a year:
#: an upgrade changes the URL.
STATIC_HEADERS: dict[str, str] = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def static_response(name: str) -> Response:
    """A vendored static file, or a plain 404."""
    found = STATIC_FILES.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    path, media_type = found
    return FileResponse(path, media_type=media_type, headers=STATIC_HEADERS)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def time_tag(at: datetime | None) -> Markup:
    """``<time>`` in UTC; console.js shows it in the browser's zone, UTC on hover."""
    if at is None:
        return Markup("&mdash;")
    utc = _utc(at)
    iso = utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    text = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(f'<time datetime="{escape(iso)}" title="{escape(text)}">{escape(text)}</time>')


def duration(seconds: float | None) -> str:
    """A duration for people: ``3 s``, ``4 min 05 s``, ``2 h 07 min``, ``3 d 4 h``."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["time"] = time_tag
ENV.filters["duration"] = duration
ENV.globals["version"] = __version__
ENV.globals["chart_of"] = bars


def page(
    request: Request,
    template: str,
    values: dict[str, Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with the security headers every console page carries."""
    html = ENV.get_template(template).render(request_path=request.url.path, **values)
    return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
