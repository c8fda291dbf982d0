"""Name-or-id lookups shared by several command groups."""

from __future__ import annotations

from jobyard.client import ApiClient, ApiError, JsonObject


def parse_id(ref: str) -> int | None:
    """``"12"`` → 12; anything that is not a positive integer → ``None`` (a name)."""
    text = ref.strip()
    if text.isdigit() and text.isascii():
        value = int(text)
        return value if value > 0 else None
    return None


async def resolve_jobconfig(api: ApiClient, ref: str) -> JsonObject:
    """The jobconfig with id ``ref`` (all digits) or named ``ref``; a 404 when there is none."""
    jobconfig_id = parse_id(ref)
    if jobconfig_id is not None:
        return await api.jobconfig_get(jobconfig_id)
    found = await api.jobconfig_find(ref)
    if found is None:
        raise ApiError(404, "not_found", f"no jobconfig named {ref!r}")
    return found


async def jobconfig_names(api: ApiClient, ids: set[int]) -> dict[int, str]:
    """Names of the given jobconfig ids (ids that cannot be read are left out)."""
    names: dict[int, str] = {}
    for jobconfig_id in sorted(ids):
        try:
            jobconfig = await api.jobconfig_get(jobconfig_id)
        except ApiError:
            continue
        names[jobconfig_id] = str(jobconfig.get("name", jobconfig_id))
    return names
