"""Alembic migrations of the jobyard schema (one chain for SQLite and PostgreSQL)."""
