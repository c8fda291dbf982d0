"""The job log: the child's stdout and stderr, line by line, timestamped, secrets masked.

Format, one log line per line of output (UTF-8 framing, the program's bytes as-is)::

    2024-05-01T12:34:56.789Z out first line the program printed
    2024-05-01T12:34:56.790Z err a warning on stderr
    2024-05-01T12:35:06.000Z sys aborted: requested by alice

- The timestamp is UTC with milliseconds and a ``Z``: when the worker *read* the
  line from the pipe (lines read together share a timestamp).
- The stream is ``out`` (stdout), ``err`` (stderr) or ``sys`` (notes of jobyard
  itself: why a job was stopped or failed to start, output files it could not keep).
- The rest of the line is what the program wrote, without its newline and without
  decoding (a reader decodes it, e.g. UTF-8 with replacement). A last line without
  a newline is written when the stream ends. A line longer than ``max_line`` bytes
  (64 KiB) is split over several log lines. Lines of stdout and stderr interleave in
  the order they were read; within one stream, order is kept.

The file is created with the first line written: a job that prints nothing (and about
which jobyard has nothing to note) leaves no file, and readers take a missing log of a
job a worker acquired as an empty one. Creating a file is the costliest system call of a
short job on some disks (allocating an inode in a crowded ext4 block group measured
150-190 µs of CPU, against ~3 µs for a rename).

Flushing: there is no user-space buffer. Every read from a pipe (up to 64 KiB) turns
into one ``write()`` of its complete lines on an ``O_APPEND`` descriptor, so a reader
following the file sees a line as soon as the program wrote it (a partial line waits
for its newline, or for the end of the stream).

Masking: each secret value (the job's secure macros) is replaced by ``*****``.
Matching runs on complete lines, and a line is only ever cut inside a long line with
the last ``len(longest secret) - 1`` bytes held back, so a value split across two
reads of the pipe is still masked. A secret containing newlines cannot match across
lines: each of its lines (pieces between newlines) is masked separately, which
covers it at the cost of also masking those pieces where they appear alone. Very
short secrets therefore mask a lot: by design, secrecy wins over readability.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

MASK = b"*****"
DEFAULT_MAX_LINE = 64 * 1024
STREAMS = ("out", "err", "sys")
#: What follows a line's timestamp, per stream.
_PREFIXES = {s: f" {s} ".encode() for s in STREAMS}

_log = logging.getLogger(__name__)


class SecretMasker:
    """Replaces every occurrence of any secret (or of any line of a multi-line one)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        pieces = {
            piece.encode("utf-8")
            for secret in secrets
            for piece in secret.replace("\r\n", "\n").split("\n")
            if piece
        }
        ordered = sorted(pieces, key=len, reverse=True)  # longest first wins at a position
        self.max_len = len(ordered[0]) if ordered else 0
        self._pattern = re.compile(b"|".join(re.escape(p) for p in ordered)) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, data: bytes) -> bytes:
        """``data`` with every secret replaced by ``*****``."""
        if self._pattern is None:
            return data
        return self._pattern.sub(MASK, data)

    def mask_text(self, text: str) -> str:
        """``text`` (e.g. an output file name) with every secret replaced by ``*****``."""
        if self._pattern is None:
            return text
        return self.mask(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


_NO_SECRETS = SecretMasker(())


class LogWriter:
    """Turns chunks of pipe output into timestamped log lines in one file.

    Synchronous and cheap: it is fed from the event loop's pipe callbacks. A write
    error (disk full) is logged once and later output is dropped, so a failing log
    never kills the job; :attr:`error` tells what happened.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        secrets: Iterable[str] = (),
        max_line: int = DEFAULT_MAX_LINE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_line = max_line
        # Most jobs have no secret: they share one masker that masks nothing.
        self._masker = SecretMasker(secrets) if secrets else _NO_SECRETS
        self._clock = clock
        self._buffers: dict[str, bytearray] = {}
        self._prefixes = _PREFIXES
        self._second = -1
        self._second_text = ""
        self.error: OSError | None = None
        self.bytes_written = 0
        #: The file is created with the first line: a job that prints nothing has none.
        self._fd: int | None = None
        self._closed = False

    # -- input ---------------------------------------------------------------------------
    def feed(self, stream: str, data: bytes) -> None:
        """Take a chunk read from ``stream``'s pipe; write its complete lines."""
        buf = self._buffers.get(stream)
        if buf is None:
            buf = self._buffers[stream] = bytearray()
        buf += data
        end = buf.rfind(b"\n")
        lines: list[bytes] = []
        if end >= 0:
            block = bytes(buf[:end])
            del buf[: end + 1]
            if self._masker:
                block = self._masker.mask(block)
            lines.extend(block.split(b"\n"))
        if len(buf) > self.max_line:
            lines.extend(self._cut_long(buf))
        if lines:
            self._write(stream, lines)

    def _cut_long(self, buf: bytearray) -> list[bytes]:
        """Emit full ``max_line`` pieces of an over-long partial line; keep the rest.

        Masks first and holds back ``longest secret - 1`` bytes, so a secret whose
        beginning is at the end of the buffer can still be completed by the next read.
        """
        data = self._masker.mask(bytes(buf)) if self._masker else bytes(buf)
        keep = max(self._masker.max_len - 1, 0)
        full = max(len(data) - keep, 0) // self.max_line
        if full == 0:
            buf[:] = data
            return []
        cut = full * self.max_line
        buf[:] = data[cut:]
        return [data[i : i + self.max_line] for i in range(0, cut, self.max_line)]

    def finish_stream(self, stream: str) -> None:
        """The stream reached its end: write its last, newline-less line if any."""
        buf = self._buffers.pop(stream, None)
        if buf:
            data = self._masker.mask(bytes(buf)) if self._masker else bytes(buf)
            self._write(stream, [data])

    def note(self, text: str) -> None:
        """Write a ``sys`` line (jobyard's own message), masked like the rest."""
        data = text.encode("utf-8", "replace")
        if self._masker:
            data = self._masker.mask(data)
        self._write("sys", data.split(b"\n"))

    def close(self) -> None:
        """Write pending partial lines and close the file (idempotent)."""
        for stream in list(self._buffers):
            self.finish_stream(stream)
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int | None:
        """The file, created now (with its folder if missing); None after an error."""
        if self._closed or self.error is not None:
            return None
        try:
            try:
                self._fd = _open_append(self.path)
            except FileNotFoundError:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._fd = _open_append(self.path)
        except OSError as exc:
            self.error = exc
            _log.warning("cannot create job log %s: %s; dropping its output", self.path, exc)
        return self._fd

    # -- output --------------------------------------------------------------------------
    def timestamp(self) -> str:
        """Now, as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (the seconds part is cached)."""
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1000):03d}Z"

    def _write(self, stream: str, lines: list[bytes]) -> None:
        fd = self._fd if self._fd is not None else self._open()
        if fd is None:
            return
        prefix = self.timestamp().encode() + self._prefixes[stream]
        parts: list[bytes] = []
        max_line = self.max_line
        for line in lines:
            if len(line) <= max_line:
                parts += (prefix, line, b"\n")
            else:
                for i in range(0, len(line), max_line):
                    parts += (prefix, line[i : i + max_line], b"\n")
        view = memoryview(b"".join(parts))
        try:
            while view:
                n = os.write(fd, view)
                self.bytes_written += n
                view = view[n:]
        except OSError as exc:
            self.error = exc
            _log.warning("cannot write job log %s: %s; dropping further output", self.path, exc)
            os.close(fd)
            self._fd = None


def _open_append(path: str | Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    return os.open(path, flags, 0o644)
