"""The output files of an ended job: every file it left in ``LOCAL_JOB_OUT_DIR``, checked.

Every entry is either **kept** (listed and downloadable) or **refused with a line in the
job's log** saying why — never dropped silently:

* a regular file with a single name is kept; in a sandbox it must also belong to the
  job's uid. Kept files are handed to the worker (its owner, mode 0600) before they are
  moved into the blob store, so nothing there belongs to a job's uid or is open to others;
* a symbolic link is refused (the job could otherwise hand over a file it merely
  points at), and so is a hard link (a file with several names: a job could link a file
  it may not read — the server's key — into its out folder and have the worker publish
  it), a file owned by another uid, and anything that is not a file (FIFO, socket, device);
* folders are walked; the name of a kept file is its path below the out folder.

Names become **safe names**: each path component is kept as it is, unless it holds bytes
that are not UTF-8, control characters (a newline...) or a backslash; then those, and any
``%``, are written ``%XX`` (the bytes in hexadecimal): ``a\\nb.txt`` is kept as
``a%0Ab.txt``. A safe name that another file already has is refused.

Call it only once every process of the job has ended: the walk trusts that nothing
changes under it.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True)
class OutputScan:
    """What :func:`collect_outputs` found: files to keep, and why others were refused."""

    kept: list[tuple[str, Path]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def safe_component(raw: bytes) -> str:
    """One path component as a safe name (see the module docstring)."""
    text = raw.decode("utf-8", "surrogateescape")
    if not any(_needs_escape(ch) for ch in text):
        return text
    parts = []
    for ch in text:
        if "\udc80" <= ch <= "\udcff":  # a byte that is not UTF-8
            parts.append(f"%{ord(ch) - 0xDC00:02X}")
        elif ch == "%" or _needs_escape(ch):
            parts.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            parts.append(ch)
    return "".join(parts)


def _needs_escape(ch: str) -> bool:
    return (
        ch == "\\"
        or "\udc80" <= ch <= "\udcff"
        or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")
    )


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def collect_outputs(out: str | Path, job_uid: int | None = None) -> OutputScan:
    """Every file under ``out``, checked and named safely, sorted by name.

    ``job_uid``: the uid the job ran as (a sandbox); its files are given back to the
    worker, and files of any other owner are refused.
    """
    scan = OutputScan()
    seen: set[str] = set()
    stack: list[tuple[bytes, str]] = [(os.fsencode(out), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            name = prefix + safe_component(entry.name)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                stack.append((entry.path, name + "/"))
                continue
            why = _refusal(st, job_uid)
            if why is None and name in seen:
                why = f"another file is already kept as {name!r}"
            if why is not None:
                scan.refused.append(f"output file {name!r} not kept: {why}")
                continue
            path = Path(os.fsdecode(entry.path))
            if job_uid is not None:
                os.chown(path, os.geteuid(), os.getegid())
            os.chmod(path, 0o600)  # it joins the server's private files
            seen.add(name)
            scan.kept.append((name, path))
    scan.kept.sort()
    return scan


def _refusal(st: os.stat_result, job_uid: int | None) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return _kind(st.st_mode)
    if st.st_nlink != 1:
        return f"a hard link ({st.st_nlink} names for one file)"
    if job_uid is not None and st.st_uid != job_uid:
        return f"it belongs to uid {st.st_uid}, not to the job"
    return None
