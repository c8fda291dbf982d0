"""Names shared by the API client modules: the API prefix, JSON objects, pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

#: A decoded JSON object as the API returns it.
JsonObject = dict[str, Any]

API = "/api/v1"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a cursor-paginated listing."""

    items: list[JsonObject]
    next_cursor: str | None = None


def params(**values: Any) -> httpx.QueryParams:
    """Query parameters without the ``None`` ones; sequences repeat the key."""
    out: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            out.extend((key, str(v)) for v in value)
        elif isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        else:
            out.append((key, str(value)))
    return httpx.QueryParams(out)
