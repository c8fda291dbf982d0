"""Names are ASCII, and every message about a refused name says "ASCII letters"."""

from __future__ import annotations

import pytest

from jobyard.core.errors import InvalidInput
from jobyard.core.macros import check_parameter_names
from jobyard.core.packages import parse_manifest
from jobyard.core.validation import check_macros, check_name


@pytest.mark.parametrize("name", ["zoë", "naïve-etl", "ζ", "名前"])
def test_a_unicode_name_is_refused_saying_ascii_letters(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_name(name, "user name")
    assert "ASCII letters" in caught.value.message


def test_macro_parameter_and_entry_point_messages_say_ascii_too() -> None:
    with pytest.raises(InvalidInput) as macro:
        check_macros({"CAFÉ": "x"})
    assert "ASCII letters" in macro.value.message
    with pytest.raises(InvalidInput) as parameter:
        check_parameter_names(["CAFÉ"])
    assert "ASCII letters" in parameter.value.message
    with pytest.raises(InvalidInput) as entrypoint:
        parse_manifest(b'[entrypoints."z\xc3\xabe"]\ncommand = ["sh"]\n')
    assert "ASCII letters" in entrypoint.value.message


def test_ascii_names_pass() -> None:
    check_name("zoe-2.etl_1", "user name")
    check_macros({"CAFE_1": "x"})
