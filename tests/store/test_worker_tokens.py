"""Worker tokens in the store, on both engines: stored by hash, found only while not
revoked, and never found by the lookup of API tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobyard.core.errors import Conflict
from jobyard.core.tokens import hash_token
from jobyard.store.protocol import Store


async def test_insert_lookup_revoke_and_list(store: Store) -> None:
    digest = hash_token("jyw_one")
    made = await store.worker_token_insert(
        name="host-a", token_hash=digest, pool="gpu", created_by="admin"
    )
    assert (made.name, made.pool, made.created_by, made.revoked) == (
        "host-a",
        "gpu",
        "admin",
        False,
    )
    found = await store.worker_token_lookup(digest)
    assert found is not None and found.id == made.id
    assert await store.token_lookup(digest) is None  # not an API token
    assert await store.token_identity(digest) is None
    with pytest.raises(Conflict):
        await store.worker_token_insert(name="dup", token_hash=digest, pool=None, created_by="a")
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await store.worker_token_touch(made.id, at)
    other = await store.worker_token_insert(
        name="host-b", token_hash=hash_token("jyw_two"), pool=None, created_by="admin"
    )
    revoked = await store.worker_token_revoke(made.id)
    assert revoked is not None and revoked.revoked and revoked.last_used_at == at
    assert await store.worker_token_revoke(made.id) is not None  # idempotent
    assert await store.worker_token_revoke(999_999) is None
    assert await store.worker_token_lookup(digest) is None
    listed = await store.worker_tokens_list()
    assert [(t.id, t.revoked) for t in listed] == [(made.id, True), (other.id, False)]
