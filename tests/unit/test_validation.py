"""Input checks that need no database."""

from __future__ import annotations

import pytest

from jobyard.core.errors import InvalidInput
from jobyard.core.validation import check_command, check_exit_codes, check_macros, check_name


@pytest.mark.parametrize("name", ["etl", "a", "nightly-etl.v2", "A_1"])
def test_good_names(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize("name", ["", "-x", "has space", "a/b", "x" * 129, "é"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid name"):
        check_name(name)


def test_macros() -> None:
    check_macros({"TARGET": "prod", "_x1": ""})
    with pytest.raises(InvalidInput, match="invalid macro name"):
        check_macros({"1BAD": "x"})
    with pytest.raises(InvalidInput, match="set by jobyard"):
        check_macros({"JOB_ID": "7"})
    with pytest.raises(InvalidInput, match="NUL"):
        check_macros({"A": "x\x00y"})


def test_commands_and_exit_codes() -> None:
    check_command(["true"])
    check_command(None)
    for bad in ([], [""], ["a\x00"]):
        with pytest.raises(InvalidInput):
            check_command(bad)
    check_exit_codes([0, 3])
    for codes in ([], [256], [-1]):
        with pytest.raises(InvalidInput):
            check_exit_codes(codes)
