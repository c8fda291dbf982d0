"""Small builders shared by integration tests."""

from __future__ import annotations

import io
import tarfile
import zipfile


def make_zip(files: dict[str, str | bytes], *, mode: int = 0o644) -> bytes:
    """A zip archive of ``{name: content}``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, content)
    return buf.getvalue()


def make_tar_with_symlink(link_name: str, target: str) -> bytes:
    """A tar.gz holding one symlink ``link_name -> target``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo(link_name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        tf.addfile(info)
    return buf.getvalue()


MANIFEST = """
[entrypoints.main]
command = ["sh", "main.sh"]
env = { LEVEL = "manifest", ONLY_MANIFEST = "m" }
"""
