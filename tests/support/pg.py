"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` on a temp dir.

Started once per test session on a free loopback port, tuned for speed (no fsync),
stopped and deleted at the end. PostgreSQL refuses to run as root, so as root the
cluster belongs to ``nobody`` and its commands run through ``runuser``.

A test gets either a brand-new empty database (``fresh_database``, for migration
tests) or the shared migrated database reset to empty (``migrated_database``, fast).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH nor under "
    "/usr/lib/postgresql/*/bin. `make test` installs them (make system-deps: "
    "apt-get install postgresql)."
)

_REUSABLE = "jobyard_test"


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_pg_bindir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``; ``PostgresMissing`` if none."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresMissing(INSTALL_HINT)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """A running throwaway cluster; build it with :func:`start_cluster`."""

    bindir: Path
    root: Path
    port: int
    run_as: str | None
    password: str = ""
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _reset_sql: str | None = None
    #: ``postgres`` options the server was started with (reused by :meth:`start`).
    options: str = ""

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` (the store rewrites it to psycopg 3)."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit admin connection."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.password,
            dbname=database,
            autocommit=True,
        )

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--", *args]
        return list(args)

    def run(self, *args: str) -> None:
        """Run a PostgreSQL binary as the cluster owner; raise with its output on failure."""
        proc = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            log = self.root / "postgres.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}\n{tail}"
            )

    def migrated_database(self, upgrade: Callable[[str], None], tables: list[str]) -> str:
        """URL of a database at the head revision with every table empty.

        Cloning a database costs ~0.25 s here, so one database is migrated once and
        then reset for each test: other connections are terminated, ``tables`` (children
        first) emptied, and every id/sequencing sequence restarted, all in ~2 ms.
        """
        url = self.url(_REUSABLE)
        if self._reset_sql is None:
            with self.connect() as conn:
                conn.execute(f"CREATE DATABASE {_REUSABLE}")
            upgrade(url)
            with self.connect(_REUSABLE) as conn:
                sequences = [
                    row[0]
                    for row in conn.execute(
                        "SELECT sequence_schema || '.' || sequence_name "
                        "FROM information_schema.sequences ORDER BY 1"
                    )
                ]
            self._reset_sql = "; ".join(
                [
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    *(f"DELETE FROM {t}" for t in tables),
                    *(f"ALTER SEQUENCE {s} RESTART" for s in sequences),
                ]
            )
        else:
            with self.connect(_REUSABLE) as conn:
                conn.execute(self._reset_sql)
        return url

    def create_database(self, *, template: str = "template0") -> str:
        """Create a new database cloned from ``template``; return its name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        with contextlib.suppress(psycopg.Error), self.connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new, empty database for one test (dropped afterwards); yields its URL."""
        name = self.create_database()
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)

    def _pg_ctl(self, *args: str) -> None:
        # -l: the server's output goes to the log file, never to our pipes (with a pipe,
        # `pg_ctl -w` would wait for the server to close it, i.e. forever).
        self.run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.root / "postgres.log"),
            *args,
        )

    def start(self) -> None:
        """Start the (stopped) server with its options; return once it accepts connections."""
        self._pg_ctl("-o", self.options, "-w", "-t", "60", "start")

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep the cluster (``pg_ctl stop -m MODE``), for outage tests."""
        self._pg_ctl("-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m MODE``: connections are cut, the server comes back."""
        self._pg_ctl("-o", self.options, "-m", mode, "-w", "-t", "60", "restart")

    def stop(self) -> None:
        """Stop the server (immediately: nothing here is worth a checkpoint) and delete it."""
        try:
            if (self.datadir / "postmaster.pid").exists():
                self.run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> PgCluster:
    """initdb + pg_ctl start on a temp dir and a free port; ``PostgresMissing`` if no binaries."""
    bindir = find_pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="jobyard-pg-"))
    run_as: str | None = None
    if os.geteuid() == 0:
        run_as = "nobody"
        user = pwd.getpwnam(run_as)
        os.chown(root, user.pw_uid, user.pw_gid)
    # A password over TCP, as in production: job programs share the host's network, so a
    # cluster that trusted 127.0.0.1 would be theirs to read and change.
    password = secrets.token_urlsafe(16)
    cluster = PgCluster(
        bindir=bindir, root=root, port=free_port(), run_as=run_as, password=password
    )
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if run_as is not None:
        user = pwd.getpwnam(run_as)
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        cluster.run(
            str(bindir / "initdb"),
            "-D",
            str(cluster.datadir),
            "-U",
            "postgres",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        cluster.options = " ".join(
            [
                f"-p {cluster.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=128MB",
                "-c max_wal_size=1GB",
                "-c checkpoint_timeout=30min",
                "-c log_min_messages=warning",
            ]
        )
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
