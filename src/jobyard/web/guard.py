"""The console's walls: security headers, the same-origin check and the cookie flags."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from jobyard.web.session import COOKIE, Session

#: Pages load scripts, styles and images from this server only, run no inline script,
#: post forms only here and may not be framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show one user's data: never kept by a shared cache or the back button's store.
    "Cache-Control": "no-store",
}

#: Form field and header that carry the CSRF secret.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def same_origin(request: Request) -> str | None:
    """None when the request comes from a page of this server, else why it does not.

    Current browsers send ``Sec-Fetch-Site`` with every request, and a page cannot
    change it: when present, it decides alone (so a reverse proxy that rewrites ``Host``
    does not break the console). Without it (older browsers), ``Origin`` or else
    ``Referer`` must name the request's own ``Host``. A request with none of the three
    did not come from a console page and is refused too.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site in ("same-origin", "none"):
            return None
        return f"the request came from another site (Sec-Fetch-Site: {fetch_site[:40]})"
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is not None:
        if origin == "null" or urlsplit(origin).netloc != host:
            return "the request came from another origin"
        return None
    referer = request.headers.get("referer")
    if referer is not None:
        if urlsplit(referer).netloc != host:
            return "the request came from another origin"
        return None
    return "the request carries no Origin header: post from a console page"


def set_session_cookie(
    response: Response, request: Request, session: Session, max_age: int
) -> None:
    """Set the session cookie: HttpOnly, SameSite=Strict, Path=/, Secure over https."""
    response.set_cookie(
        COOKIE,
        session.encode(),
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    """Remove the session cookie from the browser."""
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
