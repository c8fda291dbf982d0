"""Masking of secure macro values: stderr, byte-by-byte writes, interleaving, file names."""

from __future__ import annotations

from pathlib import Path

from jobyard.worker.logwriter import LogWriter, SecretMasker

SECRET = "s3cr3t-VALUE"


def _body(path: Path) -> str:
    return "\n".join(line.split(" ", 1)[1] for line in path.read_text().splitlines())


def test_secret_split_into_single_bytes_on_both_streams(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    writer = LogWriter(log, secrets=[SECRET])
    for stream in ("out", "err"):
        for byte in f"{stream}:{SECRET}:end\n".encode():
            writer.feed(stream, bytes([byte]))
            writer.feed("out" if stream == "err" else "err", b"")  # other stream in between
    writer.close()
    assert SECRET not in log.read_text()
    assert _body(log) == "out out:*****:end\nerr err:*****:end"


def test_secret_split_across_a_cut_long_line(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    writer = LogWriter(log, secrets=[SECRET], max_line=16)
    writer.feed("err", b"x" * 10 + SECRET[:4].encode())
    writer.feed("err", SECRET[4:].encode() + b"y" * 30)
    writer.close()
    assert SECRET not in log.read_text()
    assert "*****" in log.read_text()


def test_last_line_without_newline_is_masked(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    writer = LogWriter(log, secrets=[SECRET])
    writer.feed("err", SECRET[:3].encode())
    writer.feed("err", SECRET[3:].encode())
    writer.close()
    assert _body(log) == "err *****"


def test_mask_text_for_output_file_names() -> None:
    masker = SecretMasker([SECRET, "two\nlines"])
    assert masker.mask_text(f"report-{SECRET}.txt") == "report-*****.txt"
    assert masker.mask_text("dir/two-lines") == "dir/*****-*****"
    assert SecretMasker([]).mask_text("plain") == "plain"
