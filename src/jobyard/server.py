"""``jobyard up``: the API, the maintenance loop and local workers in one process."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from jobyard import __version__
from jobyard.api.app import close_streams, create_app
from jobyard.api.headlimit import HeadLimitedHttpToolsProtocol
from jobyard.core import eventloop
from jobyard.core.serverurl import remove_server_url, server_url_path, write_server_url
from jobyard.runtime import Runtime
from jobyard.settings import Settings

#: Where a CLI looks without JOBYARD_SERVER, and the home without JOBYARD_HOME.
DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_HOME = "./var"


def _banner(settings: Settings, runtime: Runtime, url: str) -> str:
    token_file = runtime.admin_token_file
    lines = [
        f"jobyard {__version__} is up",
        f"  URL:         {url}",
        f"  API:         {url}/api/v1/openapi.json",
    ]
    password_file = runtime.admin_password_file
    if runtime.new_admin_password:
        lines.append(f"  console:     {url}/  user admin, password {runtime.new_admin_password}")
        lines.append(f"               (shown once; kept in {password_file}, mode 0600)")
    elif password_file.exists():
        lines.append(f"  console:     {url}/  user admin, first password in {password_file}")
    else:
        lines.append(f"  console:     {url}/  (log in with a user's password; give admin one with")
        lines.append("               `jobyard users update admin --ask-password`)")
    if runtime.new_admin_token:
        lines.append(f"  admin token: {runtime.new_admin_token}")
        lines.append(f"               (shown once; kept in {token_file}, mode 0600)")
    else:
        lines.append(f"  admin token: in {token_file}  (cat it; the CLI reads it by itself)")
    db = settings.effective_database_url
    lines.append(f"  database:    {db.split('@')[-1] if '@' in db else db}")
    if settings.workers > 0:
        lines.append(f"  workers:     {settings.workers} local slot(s), pool '{settings.pool}'")
    else:
        lines.append("  workers:     none here: jobs run on other servers' slots or worker hosts")
    if runtime.isolation is not None and settings.workers > 0:
        plan = runtime.isolation
        warn = "  — UNSAFE: jobs can read this server's files" if plan.mode == "none" else ""
        lines.append(f"  isolation:   {plan.mode} ({plan.reason}){warn}")
    if runtime.example:
        lines.append("  example:     jobconfig 'hello' loaded — try: jobyard run hello --follow")
    lines.append(f"  CLI:         finds this server through {server_url_path(settings.home)}")
    exports = _exports(settings, url)
    if exports:
        lines.append("               from another folder or machine, first:")
        lines.extend(f"               {line}" for line in exports)
    return "\n".join(lines)


def _exports(settings: Settings, url: str) -> list[str]:
    """The ``export`` lines a CLI elsewhere needs when this server is not at the defaults."""
    lines = []
    if url != DEFAULT_SERVER:
        lines.append(f"export JOBYARD_SERVER={url}")
    if settings.home != Path(DEFAULT_HOME).resolve():
        lines.append(f"export JOBYARD_HOME={settings.home}")
    return lines


def client_url(settings: Settings) -> str:
    """The URL a CLI on this host uses: the listening address, a wildcard host made loopback."""
    return settings.model_copy(update={"api_url": ""}).effective_api_url


class GracefulServer(uvicorn.Server):
    """uvicorn that first ends the console's event streams when it stops.

    uvicorn stops by waiting for open connections to finish (up to its graceful
    timeout); a live page's stream never would, so it is ended first.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End the streams, then uvicorn's own graceful stop."""
        app = self.config.app
        if isinstance(app, FastAPI):
            close_streams(app)
        await super().shutdown(sockets)


def _ignore_signal(signum: int, frame: object) -> None:
    """Stand-in handler for SIGINT/SIGTERM outside uvicorn's own (see :func:`serve`)."""


async def serve(settings: Settings, *, example: bool = False) -> None:
    """Run until SIGINT/SIGTERM; running jobs are stopped and end FAILED on the way out."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    sock = _bind(settings.host, settings.port)
    # The real port (port 0 picks one) is known before anything starts: workers hand
    # it to jobs as JOBYARD_API_URL.
    settings = settings.model_copy(update={"port": sock.getsockname()[1]})
    runtime = Runtime(settings, example=example)
    app = create_app(runtime)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(5, int(settings.abort_grace_seconds) + 5),
        http=HeadLimitedHttpToolsProtocol,  # request heads are bounded too, not only bodies
    )
    server = GracefulServer(config)
    # uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises that signal with the
    # handlers it found: with the defaults the process would die of SIGTERM (exit 143,
    # "make: *** Error 143") after a clean stop. These handlers make the re-raise a no-op,
    # so a graceful stop exits 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _ignore_signal)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn has no event)
        await asyncio.sleep(0.05)
    url = client_url(settings)
    if server.started:
        gc.freeze()  # startup's objects leave the collector: full collections ~0.1 s -> ~10 ms
        try:
            write_server_url(settings.home, url)
        except OSError as exc:  # the CLI then needs JOBYARD_SERVER; the server runs on
            logging.getLogger("jobyard.server").warning(
                "cannot write %s: %s", server_url_path(settings.home), exc
            )
        print(_banner(settings, runtime, url), flush=True)
    try:
        await task
    finally:
        remove_server_url(settings.home, url)
    if not server.started:
        sys.exit(1)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the runtime starts (see :func:`serve`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio turns Nagle off (TCP_NODELAY) only on accepted
    # sockets whose protocol says TCP; with protocol 0 every answer waited ~40 ms for the
    # client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def run_server(settings: Settings, *, example: bool = False) -> None:
    """Synchronous entry point used by the CLI (``jobyard up``, ``jobyard server``).

    On uvloop when it is installed (:mod:`jobyard.core.eventloop`). This process spawns no job
    programs: a local slot's jobs run in its worker processes (started once, here, with
    ``asyncio.create_subprocess_exec``), a remote worker's in that worker.
    """
    eventloop.run(serve(settings, example=example))
