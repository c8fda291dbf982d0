"""Alembic environment: runs on the connection handed over by :func:`upgrade_database`.

No ``alembic.ini`` and no URL here: the caller opens the connection (and the
transaction, under a lock so concurrent upgraders serialise) and passes it in
``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from jobyard.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - misuse guard
    raise RuntimeError("run migrations through jobyard.store.factory.upgrade_database")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)

with context.begin_transaction():
    context.run_migrations()
