"""Run one call with ONE thread's credentials switched to a job's uid, then switch back.

Why a thread and not the process: in Linux, credentials belong to each thread (the C
library's ``setuid`` only makes them agree by signalling every thread). Switching the
calling thread alone with the raw ``setresuid``/``setresgid``/``setgroups`` system calls
lets a root worker

* **spawn** a job's program as the job's uid through CPython's fast ``vfork`` path: the
  child copies the calling thread's credentials. ``subprocess.Popen(user=...)`` instead
  falls back to ``fork`` and its cost grows with the worker's memory (measured on a
  200 MB worker, 4 threads: ~2,300 spawns/s this way, ~340/s with ``user=``);
* **kill every process of a uid** with ``kill(-1, SIGKILL)``, which signals exactly the
  processes the caller may signal — those of the uid — but never the caller itself: the
  way Nix collects what a build user left behind (``setsid`` and double forks included).

The saved uid stays 0 during the call, so the thread keeps the right to switch back; its
effective capabilities are dropped meanwhile (effective uid not 0). Supplementary groups
are cleared, so a job never runs with the worker's groups. If switching back ever
failed, the process exits at once rather than run on with a job's identity.

:meth:`ThreadCredentials.run_as` is synchronous: the switch is visible only to what the
call itself runs on that thread (the event loop's thread included: nothing else runs
there until it returns). The kernel clears a thread's parent-death signal on a
credential change, and worker processes rely on it to die with the server: the call
puts the signal back when it switches back. (Should the server die in that window of
microseconds, the worker process still exits: it sees its control socket close.)
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_log = logging.getLogger(__name__)

#: (setgroups, setresuid, setresgid) system call numbers per machine.
_SYSCALLS = {
    "x86_64": (116, 117, 119),
    "amd64": (116, 117, 119),
    "aarch64": (159, 147, 149),
    "arm64": (159, 147, 149),
    "riscv64": (159, 147, 149),
}
_PR_SET_PDEATHSIG = 1
_PR_GET_PDEATHSIG = 2
_PR_SET_NO_NEW_PRIVS = 38
_ESRCH = 3


class CredentialError(RuntimeError):
    """A credential switch was refused by the kernel."""


def unsupported_reason() -> str | None:
    """Why this process cannot switch thread credentials, or None if it can."""
    if os.geteuid() != 0:
        return "the worker does not run as root"
    if platform.system() != "Linux":
        return f"per-thread credentials need Linux, not {platform.system()}"
    if platform.machine().lower() not in _SYSCALLS:
        return f"unknown system call numbers for machine {platform.machine()!r}"
    return None


class ThreadCredentials:
    """Switches the calling thread to a uid/gid for one call (see the module docstring)."""

    def __init__(self) -> None:
        reason = unsupported_reason()
        if reason is not None:
            raise CredentialError(reason)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._setgroups, self._setresuid, self._setresgid = _SYSCALLS[platform.machine().lower()]
        self._uid = os.getuid()
        self._gid = os.getgid()
        groups = os.getgroups()
        self._groups = (ctypes.c_uint * max(len(groups), 1))(*groups)
        self._ngroups = len(groups)
        self._local = threading.local()

    def _syscall(self, number: int, *args: object) -> None:
        if self._libc.syscall(number, *args) != 0:
            errno = ctypes.get_errno()
            raise CredentialError(f"system call {number} failed: {os.strerror(errno)}")

    def run_as(self, uid: int, gid: int, fn: Callable[[], T], *, no_new_privs: bool = True) -> T:
        """``fn()`` with this thread running as ``uid``/``gid`` and no supplementary group.

        ``no_new_privs`` first sets ``PR_SET_NO_NEW_PRIVS`` on this thread (once; it
        cannot be undone and is inherited by the programs it starts), so a job cannot
        gain rights through set-user-id programs.
        """
        if no_new_privs and not getattr(self._local, "no_new_privs", False):
            if self._libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise CredentialError(f"PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}")
            self._local.no_new_privs = True
        death_signal = ctypes.c_int(0)
        self._libc.prctl(_PR_GET_PDEATHSIG, ctypes.byref(death_signal), 0, 0, 0)
        self._syscall(self._setgroups, 0, None)
        try:
            self._syscall(self._setresgid, gid, gid, self._gid)
            self._syscall(self._setresuid, uid, uid, self._uid)
        except BaseException:
            self._restore(death_signal.value)
            raise
        try:
            return fn()
        finally:
            self._restore(death_signal.value)

    def _restore(self, death_signal: int) -> None:
        try:
            self._syscall(self._setresuid, self._uid, self._uid, self._uid)
            self._syscall(self._setresgid, self._gid, self._gid, self._gid)
            self._syscall(self._setgroups, self._ngroups, self._groups)
        except CredentialError as exc:  # never go on with a job's identity
            _log.critical("cannot restore the worker's credentials: %s; exiting", exc)
            os._exit(70)
        if death_signal:  # cleared by the kernel with the switch
            self._libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)

    def kill_all(self, uid: int, gid: int) -> None:
        """SIGKILL every process of ``uid`` (never this one), however it left its group."""

        def kill() -> None:
            if self._libc.kill(-1, signal.SIGKILL) != 0:
                errno = ctypes.get_errno()
                if errno != _ESRCH:  # ESRCH: nothing of that uid is running
                    raise CredentialError(f"kill(-1) as uid {uid}: {os.strerror(errno)}")

        self.run_as(uid, gid, kill, no_new_privs=False)


_shared: ThreadCredentials | None = None
_shared_lock = threading.Lock()


def thread_credentials() -> ThreadCredentials:
    """The process-wide :class:`ThreadCredentials` (created on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ThreadCredentials()
        return _shared
