"""The per-server cache of verified tokens and policies: expiry, bound, forgetting."""

from __future__ import annotations

from jobyard.service.context import TtlCache


def test_an_entry_lives_for_its_ttl_only() -> None:
    cache: TtlCache[str, int] = TtlCache()
    cache.put("kept", 1, 60.0)
    cache.put("expired", 2, 0.0)
    cache.put("negative", 3, -1.0)
    assert cache.get("kept") == 1
    assert cache.get("expired") is None and cache.get("negative") is None
    assert cache.get("never put") is None


def test_forgetting_one_or_all() -> None:
    cache: TtlCache[int, str] = TtlCache()
    for key in (1, 2, 3):
        cache.put(key, str(key), 60.0)
    cache.forget(2)
    assert [cache.get(k) for k in (1, 2, 3)] == ["1", None, "3"]
    cache.forget()
    assert [cache.get(k) for k in (1, 2, 3)] == [None, None, None]


def test_a_full_cache_starts_over_instead_of_growing() -> None:
    cache: TtlCache[int, int] = TtlCache(max_entries=3)
    for key in range(3):
        cache.put(key, key, 60.0)
    cache.put(99, 99, 60.0)
    assert [cache.get(k) for k in range(3)] == [None, None, None]
    assert cache.get(99) == 99


def test_two_caches_share_nothing() -> None:
    first: TtlCache[int, str] = TtlCache()
    second: TtlCache[int, str] = TtlCache()
    first.put(2, "alice on the first server", 60.0)
    assert second.get(2) is None
