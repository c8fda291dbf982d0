"""``$JOBYARD_HOME/server.url``: how a local CLI finds the server started on that home.

``jobyard up`` writes the URL it serves there once it listens, and removes it when it
stops; the CLI reads it when neither ``--server`` nor ``JOBYARD_SERVER`` says where the
server is. So ``JOBYARD_PORT=18931 make run`` and a CLI run from the same checkout (the
same ``./var``) meet without any setting, just as the admin token is found next to it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SERVER_URL_FILE = "server.url"


def server_url_path(home: Path) -> Path:
    """Where the URL of the server of ``home`` is kept."""
    return home / SERVER_URL_FILE


def write_server_url(home: Path, url: str) -> None:
    """Record ``url`` atomically (a reader never sees half a line); mode 0600.

    The URL is no secret (the banner prints it, jobs get it), but everything in the home
    is private to the server's user (job uids may only pass through it): the CLI that
    reads it runs as that user, as it does to read the admin token.
    """
    path = server_url_path(home)
    tmp = path.with_name(f".{SERVER_URL_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{url}\n".encode())
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove_server_url(home: Path, url: str) -> None:
    """Remove the file if it still names ``url`` (a newer server may have replaced it)."""
    if read_server_url(home) == url.rstrip("/"):
        with contextlib.suppress(OSError):
            server_url_path(home).unlink()


def read_server_url(home: Path) -> str:
    """The URL recorded for ``home`` (one ``http(s)://`` line), or ``""`` when there is none."""
    try:
        text = server_url_path(home).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    if not text.startswith(("http://", "https://")) or any(c.isspace() for c in text):
        return ""
    return text.rstrip("/")
