"""The apply document, re-exported: its model lives in :mod:`jobyard.service.apply.document`."""

from __future__ import annotations

from jobyard.service.apply.document import (
    SPEC_FIELDS,
    ApplyFile,
    JobConfigDecl,
    PackageDecl,
    SpecError,
    load_apply_file,
    parse_apply_text,
    spec_defaults,
)
from jobyard.service.apply.exportform import dump_export

__all__ = [
    "SPEC_FIELDS",
    "ApplyFile",
    "JobConfigDecl",
    "PackageDecl",
    "SpecError",
    "dump_export",
    "load_apply_file",
    "parse_apply_text",
    "spec_defaults",
]
