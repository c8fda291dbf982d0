"""Job uids: a host-wide pool of unprivileged user ids, one per running job.

Like Nix's build users: a root worker runs each job as a uid of its own, taken from a
range no account uses (default 2,000,000,000 and up, outside what ``useradd`` and
systemd hand out), so a job cannot read the server's files, nor signal or trace the
worker or another job; and everything that uid runs is killed when the job ends.

Uids are reserved per worker process with ``flock`` on one lock file per uid in a
root-only folder (``/run/jobyard/uids``), so several worker processes and servers on one
host never share a uid; a lock dies with its process, so a crashed worker's uids come
back. A uid is skipped if ``/etc/passwd`` or ``/etc/group`` knows it. Every process of a
uid is killed when it is reserved (leftovers of a crashed predecessor) and after each job.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import stat
from pathlib import Path

from jobyard.core.errors import JobyardError

#: Where lock files live: /run is writable only by root and emptied at boot.
DEFAULT_LOCK_DIR = Path("/run/jobyard/uids")


class JobUidError(JobyardError):
    """No job uid could be reserved (range exhausted, unsafe lock folder)."""

    code = "job_uid_unavailable"


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """Create ``path`` (and missing parents) and check that only this user can write it.

    Refuses a symbolic link, a folder owned by someone else or writable by others: in a
    shared place (``/var/tmp``) another user could have made it first.
    """
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise JobUidError(
            f"{path} is not a private folder of uid {os.geteuid()}: remove it and start again"
        )
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
    return path


def _known_id(number: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(number)
        except KeyError:
            continue
        return True
    return False


class JobUids:
    """The uids reserved by one worker process; :meth:`take` and :meth:`give` per job."""

    def __init__(self, first: int, count: int, *, lock_dir: Path = DEFAULT_LOCK_DIR) -> None:
        if first < 1000 or count < 1 or first + count > 2**32 - 2:
            raise JobUidError(f"job uid range {first}+{count} is not usable")
        self.first = first
        self.count = count
        self.lock_dir = lock_dir
        self._locks: dict[int, int] = {}
        self._free: list[int] = []

    def reserve(self, wanted: int) -> list[int]:
        """Lock ``wanted`` more uids of the range (the lowest free ones) and return them."""
        private_dir(self.lock_dir)
        got: list[int] = []
        for uid in range(self.first, self.first + self.count):
            if len(got) == wanted:
                break
            if uid in self._locks or _known_id(uid):
                continue
            fd = os.open(
                self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )  # fmt: skip
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._locks[uid] = fd
            got.append(uid)
        if len(got) < wanted:
            raise JobUidError(
                f"only {len(got)} of {wanted} job uids free in {self.first}..."
                f"{self.first + self.count - 1}: raise isolation_uid_count or run fewer slots"
            )
        self._free.extend(got)
        return got

    def take(self) -> int:
        """A reserved uid no running job uses."""
        if not self._free:
            raise JobUidError("every reserved job uid is in use (more jobs than slots?)")
        return self._free.pop()

    def give(self, uid: int) -> None:
        """Return a uid whose processes are all gone."""
        if uid in self._locks and uid not in self._free:
            self._free.append(uid)

    def close(self) -> None:
        """Release every reservation."""
        for fd in self._locks.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._locks.clear()
        self._free.clear()
