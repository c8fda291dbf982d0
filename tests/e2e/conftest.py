"""Fixtures of the end-to-end tests: the browser (see :mod:`tests.e2e.browser`)."""

from __future__ import annotations

from tests.e2e.browser import browser

__all__ = ["browser"]
