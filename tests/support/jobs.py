"""What tests need to run real programs as jobs under the default job sandbox.

A root server runs each job as a uid of its own (isolation ``uid``), so a job can
neither execute the venv's Python (its interpreter lives under ``/root``) nor reach the
test's own folders (pytest's are 0700). Tests hear from jobs through their log, their
output files and the API; where a scenario needs files shared with running jobs (a crash
test waiting on a marker), :func:`shared_folder` makes a folder every job uid can use.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: A Python every user may run (``make test`` installs Debian's ``python3``).
JOB_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A temporary folder under /tmp that any job uid may read and write (0777)."""
    path = Path(tempfile.mkdtemp(prefix="jobyard-shared-", dir="/tmp"))
    try:
        os.chmod(path, 0o777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
