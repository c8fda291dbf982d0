"""LogWriter: line framing, timestamps, masking across chunk boundaries."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from jobyard.worker.logwriter import LogWriter, SecretMasker

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def body(path: Path) -> list[bytes]:
    """Log lines without their timestamps."""
    lines = path.read_bytes().split(b"\n")
    assert lines.pop() == b"", "every log line ends with a newline"
    assert all(STAMP.match(line) for line in lines)
    return [line[25:] for line in lines]


def test_timestamp_format(tmp_path: Path) -> None:
    w = LogWriter(tmp_path / "log", clock=lambda: 1714566896.789)
    assert w.timestamp() == "2024-05-01T12:34:56.789Z"
    w.feed("out", b"a\n")
    w.close()
    assert (tmp_path / "log").read_bytes() == b"2024-05-01T12:34:56.789Z out a\n"


def test_partial_lines_wait_for_their_newline(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "log"  # parent created on demand
    w = LogWriter(path)
    w.feed("out", b"hel")
    assert not path.exists()  # created with its first complete line
    w.feed("err", b"E1\nE")
    w.feed("out", b"lo\nwor")
    assert body(path) == [b"err E1", b"out hello"]
    w.finish_stream("out")
    assert body(path)[-1] == b"out wor"
    w.close()
    assert body(path)[-1] == b"err E", "close writes pending partial lines"
    w.close()  # idempotent


def test_crlf_and_empty_lines_kept(tmp_path: Path) -> None:
    w = LogWriter(tmp_path / "log")
    w.feed("out", b"a\r\n\n\nb\n")
    w.close()
    assert body(tmp_path / "log") == [b"out a\r", b"out ", b"out ", b"out b"]


def test_long_partial_line_is_split(tmp_path: Path) -> None:
    w = LogWriter(tmp_path / "log", max_line=10)
    w.feed("out", b"0123456789abcdefghijKLM")
    assert body(tmp_path / "log") == [b"out 0123456789", b"out abcdefghij"]
    w.feed("out", b"N\n")
    w.close()
    assert body(tmp_path / "log")[-1] == b"out KLMN"


@pytest.mark.parametrize("split", range(1, 30))
def test_secret_split_at_every_position(tmp_path: Path, split: int) -> None:
    data = b"user=bob password=hunter2-xyz done\n"
    w = LogWriter(tmp_path / "log", secrets=["hunter2-xyz"])
    w.feed("out", data[:split])
    w.feed("out", data[split:])
    w.close()
    assert body(tmp_path / "log") == [b"out user=bob password=***** done"]


def test_secret_split_inside_an_overlong_line(tmp_path: Path) -> None:
    """Cutting a long line must never cut a secret in two."""
    secret = "SECRETVALUE"
    for cut in range(1, 40):
        path = tmp_path / f"log{cut}"
        w = LogWriter(path, secrets=[secret], max_line=16)
        data = b"x" * 12 + secret.encode() + b"y" * 20 + secret.encode() + b"\n"
        w.feed("out", data[:cut])
        w.feed("out", data[cut:])
        w.close()
        joined = b"".join(line[4:] for line in body(path))
        assert b"SECRET" not in joined and b"VALUE" not in joined, cut
        assert joined.count(b"*****") == 2, cut


def test_masker_variants() -> None:
    m = SecretMasker(["abc", "abcdef", "", "multi\nline\r\nsecret"])
    assert m.mask(b"xabcdefx abc") == b"x*****x *****"  # the longest value wins
    assert m.mask(b"multi") == b"*****"
    assert m.mask(b"line") == b"*****"
    assert m.mask(b"nothing here") == b"nothing here"
    assert m.mask(b"no secrets") == b"no *****s"
    assert not SecretMasker([])
    assert SecretMasker(["é"]).mask("café".encode()) == b"caf*****"


def test_notes_are_masked(tmp_path: Path) -> None:
    w = LogWriter(tmp_path / "log", secrets=["pw"])
    w.note("cannot open pw\nsecond")
    w.close()
    assert body(tmp_path / "log") == [b"sys cannot open *****", b"sys second"]


def test_interleaving_keeps_order_per_stream(tmp_path: Path) -> None:
    w = LogWriter(tmp_path / "log")
    for i, stream in zip(range(200), itertools.cycle(["out", "err"]), strict=False):
        w.feed(stream, f"{stream}{i}\n".encode())
    w.close()
    lines = body(tmp_path / "log")
    assert [x for x in lines if x.startswith(b"out")] == [
        f"out out{i}".encode() for i in range(0, 200, 2)
    ]


def test_write_errors_do_not_raise(tmp_path: Path) -> None:
    w = LogWriter(Path("/dev/full"))
    w.feed("out", b"x\n")
    assert isinstance(w.error, OSError)
    w.feed("out", b"y\n")  # dropped quietly
    w.close()


def test_the_file_is_created_with_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "0" / "7.log"  # its folder is made when needed
    w = LogWriter(path)
    w.feed("out", b"no newline yet")
    assert not path.exists()
    w.feed("out", b"\n")
    assert path.read_bytes().endswith(b" out no newline yet\n")
    w.close()


def test_a_silent_program_leaves_no_file(tmp_path: Path) -> None:
    w = LogWriter(tmp_path / "7.log")
    w.finish_stream("out")
    w.finish_stream("err")
    w.close()
    w.note("after close: dropped")
    assert not (tmp_path / "7.log").exists()
    assert w.error is None


def test_a_log_that_cannot_be_created_drops_output_quietly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    w = LogWriter(blocker / "7.log")
    w.feed("out", b"x\n")
    assert isinstance(w.error, OSError)
    w.feed("out", b"y\n")
    w.close()


def test_writers_without_secrets_share_one_masker_and_others_mask(tmp_path: Path) -> None:
    plain, other = LogWriter(tmp_path / "a.log"), LogWriter(tmp_path / "b.log", secrets=[])
    assert plain._masker is other._masker and not plain._masker
    masked = LogWriter(tmp_path / "c.log", secrets=(s for s in ["hunter2"]))
    assert masked._masker is not plain._masker
    masked.feed("out", b"pw hunter2\n")
    masked.close()
    assert (tmp_path / "c.log").read_bytes().endswith(b" out pw *****\n")


def test_a_log_named_by_a_string_is_created_with_its_folder(tmp_path: Path) -> None:
    writer = LogWriter(f"{tmp_path}/logs/5.log")
    writer.note("hello")
    writer.close()
    assert (tmp_path / "logs" / "5.log").read_bytes().endswith(b" sys hello\n")
