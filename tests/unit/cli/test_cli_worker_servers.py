"""``jobyard worker --server``: one URL, the option repeated, or URLs separated by commas."""

from __future__ import annotations

import pytest

from jobyard.cli.worker import _servers


def test_one_url_stays_as_it_was() -> None:
    assert _servers(["https://jobyard.example.com/"]) == ["https://jobyard.example.com"]


def test_repeated_and_comma_separated_urls_keep_their_order_once_each() -> None:
    given = ["http://a:1,http://b:2/", " http://c:3 ", "http://a:1"]
    assert _servers(given) == ["http://a:1", "http://b:2", "http://c:3"]


def test_no_url_is_refused() -> None:
    with pytest.raises(ValueError, match="names no URL"):
        _servers([" , "])
