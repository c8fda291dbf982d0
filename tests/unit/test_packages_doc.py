"""docs/packages.md stays true: its manifests parse, and it names every manifest key."""

from __future__ import annotations

import re
from pathlib import Path

from jobyard.core import packages
from jobyard.core.packages import parse_manifest

DOC = Path(__file__).resolve().parents[2] / "docs" / "packages.md"


def test_every_toml_example_is_a_valid_manifest() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 5
    for block in blocks:
        entrypoints = parse_manifest(block)
        assert entrypoints, block


def test_every_entry_point_key_is_documented() -> None:
    text = DOC.read_text()
    for key in sorted(packages._ENTRYPOINT_KEYS):
        assert f"| `{key}` |" in text, key
    for setting in (
        "UPLOAD_MAX_BYTES",
        "UNPACK_MAX_BYTES",
        "UNPACK_MAX_RATIO",
        "UNPACK_MAX_ENTRIES",
    ):
        assert f"JOBYARD_{setting}" in text, setting
