"""``jobyard worker``: run jobs of a pool on this host for a remote ``jobyard up``.

The worker connects out over HTTP(S) with a worker token and holds nothing else of the
server (no database URL, no key). The token is read, in order of preference, from
``--token-file`` (a file only the worker's user may read), ``JOBYARD_WORKER_TOKEN``, or
``--token``. A token given with ``--token`` would be readable by every process of the host
in ``/proc/<pid>/cmdline``, so the worker re-executes itself at once without it, handing
the token over through a pipe.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path
from typing import Annotated

import typer

from jobyard.cli.context import EXIT_API, EXIT_INPUT, state_of

#: Environment variable holding the worker token (removed from the worker's own
#: environment once read, and never passed to a job).
TOKEN_ENV = "JOBYARD_WORKER_TOKEN"


def _scrub_argv_token() -> None:
    """Re-execute without ``--token VALUE`` in the command line (see the module doc).

    The value goes through an inherited pipe, named by the hidden ``--token-fd``.
    """
    argv = sys.argv[1:]
    kept: list[str] = []
    token: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--token" and i + 1 < len(argv):
            token = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--token="):
            token = arg.split("=", 1)[1]
            i += 1
            continue
        kept.append(arg)
        i += 1
    if token is None:
        return
    read_fd, write_fd = os.pipe()
    os.write(write_fd, token.encode())
    os.close(write_fd)
    os.set_inheritable(read_fd, True)
    os.execv(
        sys.executable, [sys.executable, "-m", "jobyard.cli", *kept, "--token-fd", str(read_fd)]
    )


def _read_token_file(path: Path) -> str:
    """The token of a file that only its owner may read (refused otherwise)."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror}") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"the token file {path} may be read by other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}): chmod 600 it"
        )
    return text.strip()


def _labels(values: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ValueError(f"--label {value!r}: write it as key=value")
        labels[key] = val
    return labels


def _servers(values: list[str]) -> list[str]:
    """Every URL of the ``--server`` options, in order (one may list several, separated
    by commas); duplicates dropped."""
    found: list[str] = []
    for value in values:
        for url in value.split(","):
            url = url.strip().rstrip("/")
            if url and url not in found:
                found.append(url)
    if not found:
        raise ValueError("--server names no URL")
    return found


def worker_command(
    ctx: typer.Context,
    server: Annotated[
        list[str],
        typer.Option(
            "--server",
            help="URL of a jobyard up (or its load balancer). Repeatable (or comma-separated) "
            "for replicas: the worker uses the first and moves to the next when one fails.",
        ),
    ],
    pool: Annotated[str, typer.Option("--pool", help="The pool whose jobs to run.")] = "default",
    slots: Annotated[
        int, typer.Option("--slots", "-s", help="Jobs run at once.", min=1, max=10_000)
    ] = 1,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="A label key=value (repeatable).")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="File holding the worker token (mode 600)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="The worker token (prefer --token-file or JOBYARD_WORKER_TOKEN).",
        ),
    ] = None,
    token_fd: Annotated[int | None, typer.Option("--token-fd", hidden=True)] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Data folder (env JOBYARD_HOME); the worker's files go in HOME/worker.",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Package cache by sha256 (default HOME/worker/cache)."),
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", help="Long-poll seconds per acquisition.", min=1, max=55)
    ] = 25.0,
    prefetch: Annotated[
        int | None,
        typer.Option(
            "--prefetch",
            help="Jobs claimed ahead of free slots (default: as many as --slots; 0: none).",
            min=0,
            max=10_000,
        ),
    ] = None,
) -> None:
    """Run jobs of a pool on this host for a remote server (SIGTERM: finish running jobs,
    take no new ones, exit 0). Create its token with `jobyard workers token create`."""
    state = state_of(ctx)
    if token is not None:  # never leave it in /proc/<pid>/cmdline
        _scrub_argv_token()
    try:
        if token_fd is not None:
            with os.fdopen(token_fd, "r", encoding="utf-8") as fh:
                value = fh.read().strip()
        elif token_file is not None:
            value = _read_token_file(token_file)
        else:
            value = os.environ.get(TOKEN_ENV, "").strip()
        labels = _labels(label or [])
        servers = _servers(server)
    except ValueError as exc:
        state.fail(str(exc), EXIT_INPUT)
    os.environ.pop(TOKEN_ENV, None)
    if not value:
        state.fail(
            f"no worker token: pass --token-file FILE (or set {TOKEN_ENV}); an admin creates "
            "one with `jobyard workers token create NAME`",
            EXIT_INPUT,
        )
    settings = state.settings(**({"home": home} if home is not None else {}))
    worker_home = settings.home / "worker"
    from jobyard.core import eventloop
    from jobyard.worker.remote import RemoteOptions, WorkerStartError, run_remote_worker

    opts = RemoteOptions(
        server=servers[0],
        fallback_servers=tuple(servers[1:]),
        token=value,
        pool=pool,
        slots=slots,
        home=worker_home,
        cache_dir=cache_dir or worker_home / "cache",
        labels=labels,
        isolation=settings.isolation,
        isolation_uid_first=settings.isolation_uid_first,
        isolation_uid_count=settings.isolation_uid_count,
        hide=tuple(p for p in (token_file, *settings.isolation_hide) if p is not None),
        wait_seconds=wait,
        prefetch=prefetch,
        abort_grace_seconds=settings.abort_grace_seconds,
        unpack_max_bytes=settings.unpack_max_bytes,
        unpack_max_entries=settings.unpack_max_entries,
    )
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code = eventloop.run(run_remote_worker(opts))  # on uvloop when installed
    except WorkerStartError as exc:
        state.fail(str(exc), EXIT_API)
    raise typer.Exit(code)
